package app

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// BootstrapSession is the answer to a bootstrap login: the task that makes the user's host
// ready, and the secret that opens its status and handoff.
type BootstrapSession struct {
	TaskID string    `json:"task_id"`
	HostID string    `json:"host_id"`
	Status TaskState `json:"status"`
	// Secret is the session's capability: the status and handoff of TaskID answer only a
	// request that carries it (Authorization: Bearer SECRET), until ExpiresAt.
	Secret    string    `json:"secret"`
	ExpiresAt time.Time `json:"expires_at"`
}

// BootstrapSessionTTL is how long a bootstrap session's secret opens its task.
const BootstrapSessionTTL = time.Hour

// BootstrapSecretPrefix starts every bootstrap session secret.
const BootstrapSecretPrefix = "ccb_"

// bootstrapKinds are the tasks a bootstrap session follows: those that make a host ready.
var bootstrapKinds = map[string]bool{TaskHostCreate: true, TaskHostStart: true, TaskHostRebuild: true}

// bootstrapMAC binds a session secret to its task, the task's user as they were when it was
// issued (their Version changes with their password, disabling or deletion), and its expiry.
func (s *Service) bootstrapMAC(taskID string, u User, exp int64) []byte {
	m := hmac.New(sha256.New, s.cfg.TokenHashKey)
	m.Write([]byte("cloud-cli-proxy bootstrap session\x00" + taskID + "\x00" + u.ID + "\x00" +
		strconv.FormatInt(u.Version, 10) + "\x00" + strconv.FormatInt(exp, 10)))
	return m.Sum(nil)
}

// bootstrapSecret issues the secret of a session on task taskID for u, valid until exp. It is
// stateless: BootstrapSecretPrefix, then base64url of the expiry (8 bytes, Unix seconds) and
// bootstrapMAC.
func (s *Service) bootstrapSecret(taskID string, u User, exp time.Time) string {
	b := binary.BigEndian.AppendUint64(nil, uint64(exp.Unix()))
	b = append(b, s.bootstrapMAC(taskID, u, exp.Unix())...)
	return BootstrapSecretPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// errBootstrapSession is the one answer to a bootstrap status or handoff request without the
// right secret, whatever was wrong: no secret, another task's, a forged or expired one, a task
// that does not exist or is no bootstrap task, a user who may no longer log in.
func errBootstrapSession() error {
	return &Error{Kind: KindUnauthenticated, Code: CodeUnauthenticated,
		Message: "invalid or expired bootstrap session: send Authorization: Bearer <secret of POST /v1/bootstrap/sessions>"}
}

// bootstrapOpen checks that secret is the secret of a live bootstrap session on task id and
// returns the task and its user.
func (s *Service) bootstrapOpen(tx Tx, id, secret string) (Task, User, error) {
	raw, ok := strings.CutPrefix(secret, BootstrapSecretPrefix)
	if !ok {
		return Task{}, User{}, errBootstrapSession()
	}
	b, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil || len(b) != 8+sha256.Size {
		return Task{}, User{}, errBootstrapSession()
	}
	t, err := tx.GetTask(id)
	if isNotFound(err) {
		return Task{}, User{}, errBootstrapSession()
	} else if err != nil {
		return Task{}, User{}, err
	}
	if !bootstrapKinds[t.Kind] || t.UserID == "" {
		return Task{}, User{}, errBootstrapSession()
	}
	u, err := tx.GetUser(t.UserID)
	if isNotFound(err) {
		return Task{}, User{}, errBootstrapSession()
	} else if err != nil {
		return Task{}, User{}, err
	}
	exp := int64(binary.BigEndian.Uint64(b[:8]))
	if !hmac.Equal(b[8:], s.bootstrapMAC(t.ID, u, exp)) || !s.Now().Before(time.Unix(exp, 0)) || !s.userMayLogin(u) {
		return Task{}, User{}, errBootstrapSession()
	}
	return t, u, nil
}

// CreateBootstrapSession logs a user in with their password and makes their host ready:
// created when they have none, started when stopped. Throttled like Login. A viewer is
// refused (403): bootstrap creates or starts a container, and a viewer may change nothing.
// When the host is already being created, started or rebuilt the session follows that task;
// any other task in progress is a 409.
func (s *Service) CreateBootstrapSession(ctx context.Context, ip, username, password string) (BootstrapSession, error) {
	now := s.Now()
	keys := throttleKeys("", ip, username) // the throttle of Login
	if v := s.throttle.check(now, keys...); v.wait > 0 {
		s.throttled(ctx, "bootstrap.login", ip, username, v)
		return BootstrapSession{}, tooManyAttempts(v.wait)
	}
	u, err := s.CheckPassword(ctx, username, password)
	if err != nil {
		s.throttle.fail(now, keys...)
		e := s.event(Anonymous(ip), "bootstrap.login", ResultFailure)
		e.ActorName, e.UserID, e.Message = truncate(username, 64), u.ID, "invalid credentials"
		s.record(ctx, e)
		return BootstrapSession{}, errUnauthenticated()
	}
	s.throttle.succeed(keys[0])
	p := Principal{UserID: u.ID, Username: u.Username, Role: u.Role, Method: "password", SourceIP: ip}
	if !p.CanWrite() {
		e := s.event(p, "bootstrap.login", ResultDenied)
		e.UserID, e.Message = u.ID, "viewer role is read-only"
		s.record(ctx, e)
		return BootstrapSession{}, forbidden("viewer role is read-only: bootstrap would create or start a workspace")
	}
	var hosts []Host
	err = s.store.View(ctx, func(tx Tx) error {
		var err error
		hosts, err = tx.ListHostsByUser(u.ID)
		return err
	})
	if err != nil {
		return BootstrapSession{}, err
	}
	var task Task
	var hostID string
	if len(hosts) == 0 {
		// Bootstrap acts for the user, with the system's authority to create their one host.
		sys := systemPrincipal()
		sys.SourceIP = ip
		hc, err := s.CreateHost(ctx, sys, CreateHostInput{UserID: u.ID})
		if err != nil {
			return BootstrapSession{}, err
		}
		task, hostID = hc.Task, hc.Host.ID
	} else {
		h := hosts[0]
		hostID = h.ID
		res, err := s.hostAction(ctx, p, h.ID, TaskHostStart, false, u.ID)
		if err != nil {
			if active, ok := s.readyingTask(ctx, err, h); ok {
				res.Task = active
			} else {
				return BootstrapSession{}, err
			}
		}
		task = res.Task
	}
	e := s.event(p, "bootstrap.login", ResultSuccess)
	e.UserID, e.HostID, e.Message = u.ID, hostID, "task "+task.ID
	s.record(ctx, e)
	exp := now.Add(BootstrapSessionTTL)
	return BootstrapSession{TaskID: task.ID, HostID: hostID, Status: task.State,
		Secret: s.bootstrapSecret(task.ID, u, exp), ExpiresAt: exp}, nil
}

// readyingTask returns the task in progress on h when err says h is busy with it and it is
// one that makes h ready (a bootstrap session can follow it).
func (s *Service) readyingTask(ctx context.Context, err error, h Host) (Task, bool) {
	if AsError(err).Code != CodeHostBusy || h.ActiveTaskID == "" {
		return Task{}, false
	}
	var t Task
	if s.store.View(ctx, func(tx Tx) error {
		var err error
		t, err = tx.GetTask(h.ActiveTaskID)
		return err
	}) != nil {
		return Task{}, false
	}
	if !bootstrapKinds[t.Kind] || t.UserID != h.UserID || (t.State != TaskQueued && t.State != TaskRunning) {
		return Task{}, false
	}
	t.Options = nil
	return t, true
}

// BootstrapTaskStatus is what a bootstrap session's status URL reveals: the task's progress.
type BootstrapTaskStatus struct {
	ID    string     `json:"id"`
	Kind  string     `json:"kind"`
	State TaskState  `json:"state"`
	Steps []TaskStep `json:"steps"`
	Error *TaskError `json:"error,omitempty"`
	// HandoffReady is set once the task succeeded: the handoff can be fetched.
	HandoffReady bool `json:"-"`
}

// BootstrapTask returns the progress of a bootstrap session's task to the holder of the
// session's secret.
func (s *Service) BootstrapTask(ctx context.Context, id, secret string) (BootstrapTaskStatus, error) {
	var t Task
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		t, _, err = s.bootstrapOpen(tx, id, secret)
		return err
	})
	if err != nil {
		return BootstrapTaskStatus{}, err
	}
	st := BootstrapTaskStatus{ID: t.ID, Kind: t.Kind, State: t.State, Steps: t.Steps, Error: t.Error}
	if t.State == TaskSucceeded {
		st.HandoffReady = true
	}
	return st, nil
}

// Handoff is how to reach a host over SSH.
type Handoff struct {
	SSHHost string `json:"ssh_host"`
	SSHPort int    `json:"ssh_port"`
	SSHUser string `json:"ssh_user"`
	SSHPass string `json:"ssh_pass,omitempty"`
	Command string `json:"command"`
}

// BootstrapHandoff returns the SSH parameters once a bootstrap session's task succeeded, to
// the holder of the session's secret.
func (s *Service) BootstrapHandoff(ctx context.Context, id, secret string) (Handoff, error) {
	var out Handoff
	err := s.store.View(ctx, func(tx Tx) error {
		t, u, err := s.bootstrapOpen(tx, id, secret)
		if err != nil {
			return err
		}
		if t.State != TaskSucceeded {
			return conflict(CodeTaskNotFinished, "task is %s; the handoff is available once it succeeded", t.State)
		}
		h, err := tx.GetHost(t.HostID)
		if err != nil {
			return withMessage(err, "host not found")
		}
		if h.UserID != u.ID {
			return notFound("host")
		}
		out = s.handoff(u, h, "")
		return nil
	})
	return out, err
}

func (s *Service) handoff(u User, h Host, pass string) Handoff {
	user := u.Username + "+" + h.ShortID
	cmd := "ssh " + user + "@" + s.cfg.PublicHost
	if s.cfg.SSHProxyPort != 22 {
		cmd += " -p " + strconv.Itoa(s.cfg.SSHProxyPort)
	}
	return Handoff{SSHHost: s.cfg.PublicHost, SSHPort: s.cfg.SSHProxyPort, SSHUser: user, SSHPass: pass, Command: cmd}
}

// EntryAuth checks the owner's password for a host's short link and hands out a fresh host
// SSH password for the gateway.
func (s *Service) EntryAuth(ctx context.Context, ip, shortID, password string) (Handoff, error) {
	now := s.Now()
	key := "entry:" + shortID
	if wait := s.throttle.blocked(now, "ip:"+ip, key); wait > 0 {
		return Handoff{}, &Error{Kind: KindRateLimited, Code: CodeTooManyAttempts, Message: "too many failed attempts; try again later", RetryAfter: wait}
	}
	var h Host
	var u User
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		h, err = tx.GetHostByShortID(shortID)
		if err != nil {
			return err
		}
		u, err = tx.GetUser(h.UserID)
		return err
	})
	ok := err == nil && bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(password)) == nil && s.userMayLogin(u)
	if err != nil {
		_ = bcrypt.CompareHashAndPassword(s.dummyHash, []byte(password))
	}
	if !ok {
		s.throttle.fail(now, "ip:"+ip, key)
		e := s.event(Anonymous(ip), "entry.auth", ResultFailure)
		e.HostID, e.UserID, e.Message = h.ID, u.ID, "invalid credentials for "+truncate(shortID, 16)
		s.record(ctx, e)
		return Handoff{}, errUnauthenticated()
	}
	s.throttle.succeed(key)
	pass := randomPassword(20)
	hash, err := bcrypt.GenerateFromPassword([]byte(pass), s.cfg.BcryptCost)
	if err != nil {
		return Handoff{}, err
	}
	p := Principal{UserID: u.ID, Username: u.Username, Role: u.Role, Method: "password", SourceIP: ip}
	err = s.store.Update(ctx, func(tx Tx) error {
		cur, err := tx.GetHost(h.ID)
		if err != nil {
			return err
		}
		cur.SSHPasswordHash, cur.UpdatedAt = string(hash), s.Now()
		if err := tx.PutHost(cur); err != nil {
			return err
		}
		e := s.event(p, "entry.auth", ResultSuccess)
		e.HostID, e.UserID, e.TargetType, e.TargetID = h.ID, u.ID, "host", h.ID
		return tx.AddEvent(&e)
	})
	if err != nil {
		return Handoff{}, err
	}
	return s.handoff(u, h, pass), nil
}
