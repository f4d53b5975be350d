package app

import (
	"context"
	"sort"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"
)

// ParseSSHLogin splits a gateway login name, USER or USER+SHORTID.
func ParseSSHLogin(login string) (username, shortID string) {
	username, shortID, _ = strings.Cut(login, "+")
	return username, shortID
}

// SSHPasswordLogin checks a username and password for an SSH door. For the gateway the
// password may also be the chosen host's SSH password (login USER+SHORTID, or the user's
// default host). Failures are throttled per IP and per username and audited.
func (s *Service) SSHPasswordLogin(ctx context.Context, ip, login, password string, gateway bool) (Principal, error) {
	username, shortID := ParseSSHLogin(login)
	now := s.Now()
	if wait := s.throttle.blocked(now, "sship:"+ip, "sshuser:"+username); wait > 0 {
		s.sshFailure(ctx, ip, username, "", "throttled")
		return Principal{}, &Error{Kind: KindRateLimited, Code: "too_many_attempts", Message: "too many failed logins; try again later", RetryAfter: wait}
	}
	var u User
	var hostOK bool
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		u, err = tx.GetUserByName(username)
		if err != nil {
			return err
		}
		if gateway {
			if h, err := s.pickHost(tx, u.ID, shortID); err == nil {
				hostOK = h.SSHPasswordHash != "" && bcrypt.CompareHashAndPassword([]byte(h.SSHPasswordHash), []byte(password)) == nil
			}
		}
		return nil
	})
	method := "ssh_password"
	ok := false
	switch {
	case err != nil:
		_ = bcrypt.CompareHashAndPassword(s.dummyHash, []byte(password))
	case hostOK:
		ok, method = true, "ssh_host_password"
	default:
		ok = bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(password)) == nil
	}
	if !ok || !s.userMayLogin(u) {
		s.throttle.fail(now, "sship:"+ip, "sshuser:"+username)
		s.sshFailure(ctx, ip, username, u.ID, "invalid credentials")
		return Principal{}, errUnauthenticated()
	}
	s.throttle.succeed("sshuser:" + username)
	return s.sshSuccess(ctx, u, method, "", ip), nil
}

// SSHKeyLogin checks that key is one of the user's SSH keys (admin-managed or their own).
// Call it for the key that actually signed.
func (s *Service) SSHKeyLogin(ctx context.Context, ip, login string, key ssh.PublicKey) (Principal, error) {
	username, _ := ParseSSHLogin(login)
	now := s.Now()
	if wait := s.throttle.blocked(now, "sship:"+ip); wait > 0 {
		return Principal{}, &Error{Kind: KindRateLimited, Code: "too_many_attempts", Message: "too many failed logins; try again later", RetryAfter: wait}
	}
	fp := ssh.FingerprintSHA256(key)
	var u User
	found := false
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		u, err = tx.GetUserByName(username)
		if err != nil {
			return err
		}
		keys, err := tx.ListSSHKeys(u.ID)
		for _, k := range keys {
			found = found || k.Fingerprint == fp
		}
		return err
	})
	if err != nil || !found || !s.userMayLogin(u) {
		// An offered key that is not the user's is normal (clients try several); only
		// count it against the IP, without an event per key.
		s.throttle.fail(now, "sship:"+ip)
		return Principal{}, errUnauthenticated()
	}
	return s.sshSuccess(ctx, u, "ssh_key", fp, ip), nil
}

func (s *Service) sshSuccess(ctx context.Context, u User, method, fp, ip string) Principal {
	p := Principal{UserID: u.ID, Username: u.Username, Role: u.Role, Method: method, SourceIP: ip}
	e := s.event(p, "auth.ssh_login", ResultSuccess)
	e.UserID, e.Message = u.ID, method+" "+fp
	s.record(ctx, e)
	return p
}

func (s *Service) sshFailure(ctx context.Context, ip, username, userID, why string) {
	e := s.event(Principal{Method: "ssh", SourceIP: ip}, "auth.ssh_login", ResultFailure)
	e.ActorName, e.UserID, e.Message = truncate(username, 64), userID, why
	s.record(ctx, e)
}

// SSHRecheck confirms at session start that p's account may still log in (it may have been
// disabled between authentication and the session) and refreshes its role.
func (s *Service) SSHRecheck(ctx context.Context, p Principal) (Principal, error) {
	var u User
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		u, err = tx.GetUser(p.UserID)
		return err
	})
	if err != nil || !s.userMayLogin(u) {
		return Principal{}, errUnauthenticated()
	}
	p.Role, p.Username = u.Role, u.Username
	return p, nil
}

// pickHost chooses the host of a gateway login: by short id, else the user's only or
// default (oldest) host. Another user's host is not found.
func (s *Service) pickHost(tx Tx, userID, shortID string) (Host, error) {
	if shortID != "" {
		h, err := tx.GetHostByShortID(shortID)
		if err != nil || h.UserID != userID {
			return Host{}, notFound("host")
		}
		return h, nil
	}
	hs, err := tx.ListHostsByUser(userID)
	if err != nil {
		return Host{}, err
	}
	if len(hs) == 0 {
		return Host{}, &Error{Kind: KindNotFound, Code: "no_host", Message: "you have no host yet; ask an administrator to create one"}
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i].CreatedAt.Before(hs[j].CreatedAt) })
	return hs[0], nil
}

// GatewayHost resolves the host a gateway login asks for.
func (s *Service) GatewayHost(ctx context.Context, p Principal, login string) (Host, error) {
	if err := s.requireAuth(p); err != nil {
		return Host{}, err
	}
	_, shortID := ParseSSHLogin(login)
	var h Host
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		h, err = s.pickHost(tx, p.UserID, shortID)
		return err
	})
	if err != nil {
		e := s.event(p, "gateway.host", ResultDenied)
		e.UserID, e.Message = p.UserID, "no such host: "+truncate(login, 80)
		s.record(ctx, e)
	}
	return h, err
}

// EnsureHostRunning makes sure the caller's host runs, starting it (as a task) when it is
// stopped and the caller may, reporting progress lines to say. It fails with a plain reason
// when the host cannot be started.
func (s *Service) EnsureHostRunning(ctx context.Context, p Principal, hostID string, say func(string)) error {
	for attempt := 0; attempt < 3; attempt++ {
		var h Host
		if err := s.store.View(ctx, func(tx Tx) error {
			var err error
			h, err = tx.GetHost(hostID)
			return err
		}); err != nil {
			return err
		}
		if h.UserID != p.UserID {
			return notFound("host")
		}
		rh, err := s.runtime.Inspect(ctx, h.ID)
		if err != nil {
			return err
		}
		if rh.State == StateRunning && h.ActiveTaskID == "" {
			return nil
		}
		taskID := h.ActiveTaskID
		if taskID == "" {
			if h.DesiredState == HostDeleted {
				return &Error{Kind: KindConflict, Code: "host_deleting", Message: "this host is being deleted"}
			}
			res, err := s.StartOwnHost(ctx, p, h.ID)
			if err != nil {
				return err
			}
			taskID = res.Task.ID
			say("Your workspace is stopped; starting it…")
		} else {
			say("Waiting for a running task on your workspace to finish…")
		}
		wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		t, err := s.WaitTask(wctx, taskID)
		cancel()
		if err != nil {
			return err
		}
		for _, st := range t.Steps {
			say("  " + st.Name + ": " + st.State)
		}
		if t.State == TaskFailed && t.Error != nil && t.Kind == TaskHostStart {
			return &Error{Kind: KindUnavailable, Code: t.Error.Code, Message: "your workspace could not be started: " + t.Error.Message}
		}
	}
	return &Error{Kind: KindUnavailable, Code: "host_not_ready", Message: "your workspace did not become ready"}
}

// AuditGateway records a gateway session event (shell, exec, sftp, port forward).
func (s *Service) AuditGateway(ctx context.Context, p Principal, hostID, action, detail string) {
	e := s.event(p, action, ResultSuccess)
	e.UserID, e.HostID, e.TargetType, e.TargetID, e.Message = p.UserID, hostID, "host", hostID, truncate(detail, 200)
	s.record(ctx, e)
}

// Runtime returns the engine the service drives (the SSH gateway bridges sessions through it).
func (s *Service) Runtime() Runtime { return s.runtime }
