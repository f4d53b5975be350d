package app

import (
	"context"
	"strconv"

	"golang.org/x/crypto/bcrypt"
)

// BootstrapSession is the answer to a bootstrap login: the task that makes the user's host
// ready.
type BootstrapSession struct {
	TaskID    string `json:"task_id"`
	HostID    string `json:"host_id"`
	Status    string `json:"status"`
	StatusURL string `json:"status_url"`
}

// CreateBootstrapSession logs a user in with their password and makes their host ready:
// created when they have none, started when stopped. Throttled like Login.
func (s *Service) CreateBootstrapSession(ctx context.Context, ip, username, password string) (BootstrapSession, error) {
	now := s.Now()
	if wait := s.throttle.blocked(now, "ip:"+ip, "user:"+username); wait > 0 {
		return BootstrapSession{}, &Error{Kind: KindRateLimited, Code: "too_many_attempts", Message: "too many failed logins; try again later", RetryAfter: wait}
	}
	u, err := s.CheckPassword(ctx, username, password)
	if err != nil {
		s.throttle.fail(now, "ip:"+ip, "user:"+username)
		e := s.event(Anonymous(ip), "bootstrap.login", ResultFailure)
		e.ActorName, e.UserID, e.Message = truncate(username, 64), u.ID, "invalid credentials"
		s.record(ctx, e)
		return BootstrapSession{}, errUnauthenticated()
	}
	s.throttle.succeed("user:" + username)
	p := Principal{UserID: u.ID, Username: u.Username, Role: u.Role, Method: "password", SourceIP: ip}
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
			if ae := AsError(err); ae.Code == "host_busy" && h.ActiveTaskID != "" {
				res.Task.ID, res.Task.State = h.ActiveTaskID, TaskRunning
			} else {
				return BootstrapSession{}, err
			}
		}
		task = res.Task
	}
	e := s.event(p, "bootstrap.login", ResultSuccess)
	e.UserID, e.HostID, e.Message = u.ID, hostID, "task "+task.ID
	s.record(ctx, e)
	return BootstrapSession{TaskID: task.ID, HostID: hostID, Status: task.State,
		StatusURL: "/v1/bootstrap/tasks/" + task.ID}, nil
}

// BootstrapTaskStatus is what the unauthenticated status URL reveals: the task's progress.
type BootstrapTaskStatus struct {
	ID     string     `json:"id"`
	Kind   string     `json:"kind"`
	State  string     `json:"state"`
	Steps  []TaskStep `json:"steps"`
	Error  *TaskError `json:"error,omitempty"`
	Handof string     `json:"handoff_url,omitempty"`
}

// BootstrapTask returns a bootstrap task's progress. Task ids are random UUIDs: knowing one is
// the capability to watch it.
func (s *Service) BootstrapTask(ctx context.Context, id string) (BootstrapTaskStatus, error) {
	var t Task
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		t, err = tx.GetTask(id)
		return err
	})
	if err != nil {
		return BootstrapTaskStatus{}, withMessage(err, "task not found")
	}
	st := BootstrapTaskStatus{ID: t.ID, Kind: t.Kind, State: t.State, Steps: t.Steps, Error: t.Error}
	if t.State == TaskSucceeded {
		st.Handof = "/v1/bootstrap/tasks/" + t.ID + "/handoff"
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

// BootstrapHandoff returns the SSH parameters once a bootstrap task succeeded.
func (s *Service) BootstrapHandoff(ctx context.Context, id string) (Handoff, error) {
	var out Handoff
	err := s.store.View(ctx, func(tx Tx) error {
		t, err := tx.GetTask(id)
		if err != nil {
			return withMessage(err, "task not found")
		}
		if t.State != TaskSucceeded {
			return conflict("task_not_finished", "task is %s; the handoff is available once it succeeded", t.State)
		}
		h, err := tx.GetHost(t.HostID)
		if err != nil {
			return withMessage(err, "host not found")
		}
		u, err := tx.GetUser(h.UserID)
		if err != nil {
			return withMessage(err, "user not found")
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
		return Handoff{}, &Error{Kind: KindRateLimited, Code: "too_many_attempts", Message: "too many failed attempts; try again later", RetryAfter: wait}
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
