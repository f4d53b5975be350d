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
	keys := throttleKeys("ssh", ip, username)
	if v := s.throttle.check(now, keys...); v.wait > 0 {
		s.throttled(ctx, "auth.ssh_login", ip, username, v)
		return Principal{}, tooManyAttempts(v.wait)
	}
	var u User
	var host Host
	var hostOK bool
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		u, err = tx.GetUserByName(username)
		if err != nil {
			return err
		}
		if gateway {
			if h, err := s.pickHost(tx, u.ID, shortID); err == nil {
				host = h
				hostOK = h.SSHPasswordHash != "" && bcrypt.CompareHashAndPassword([]byte(h.SSHPasswordHash), []byte(password)) == nil
			}
		}
		return nil
	})
	method := MethodSSHPassword
	ok := false
	switch {
	case err != nil:
		_ = bcrypt.CompareHashAndPassword(s.dummyHash, []byte(password))
	case hostOK:
		ok, method = true, MethodSSHHostPassword
	default:
		ok = bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(password)) == nil
	}
	if !ok || !s.userMayLogin(u) {
		s.throttle.fail(now, keys...)
		s.sshFailure(ctx, ip, username, u.ID, "invalid credentials")
		return Principal{}, errUnauthenticated()
	}
	s.throttle.succeed(keys[0])
	p := Principal{UserID: u.ID, Username: u.Username, Role: u.Role, Method: method, SourceIP: ip, Cred: credDigest(u.PasswordHash)}
	if method == MethodSSHHostPassword {
		p.Cred, p.CredHost = credDigest(host.SSHPasswordHash), host.ID
	}
	return s.sshSuccess(ctx, p, ""), nil
}

// SSHKeyLogin checks that key is one of the user's SSH keys (admin-managed or their own).
// Call it for the key that actually signed.
func (s *Service) SSHKeyLogin(ctx context.Context, ip, login string, key ssh.PublicKey) (Principal, error) {
	username, _ := ParseSSHLogin(login)
	keys := throttleKeys("ssh", ip, username)
	if v := s.throttle.check(s.Now(), keys...); v.wait > 0 {
		s.throttled(ctx, "auth.ssh_login", ip, username, v)
		return Principal{}, tooManyAttempts(v.wait)
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
		// An offered key that is not the user's is normal (an agent offers several): not a
		// failed login. The door reports the connection's failure once it finally fails
		// (SSHLoginFailed).
		return Principal{}, errUnauthenticated()
	}
	s.throttle.succeed(keys[0])
	p := Principal{UserID: u.ID, Username: u.Username, Role: u.Role, Method: MethodSSHKey, SourceIP: ip, KeyFP: fp}
	return s.sshSuccess(ctx, p, fp), nil
}

// SSHLoginFailed records that an SSH connection from ip for login finally failed to
// authenticate with keys alone (it offered keys, none of them the user's, and gave up): one
// failure for the throttle and one audit event, whatever the number of keys it offered.
// Wrong passwords are counted as they happen (SSHPasswordLogin).
func (s *Service) SSHLoginFailed(ctx context.Context, ip, login string) {
	username, _ := ParseSSHLogin(login)
	s.throttle.fail(s.Now(), throttleKeys("ssh", ip, username)...)
	s.sshFailure(ctx, ip, username, "", "no offered key is one of the user's")
}

func (s *Service) sshSuccess(ctx context.Context, p Principal, fp string) Principal {
	e := s.event(p, "auth.ssh_login", ResultSuccess)
	e.UserID, e.Message = p.UserID, p.Method.String()+" "+fp
	s.record(ctx, e)
	return p
}

func (s *Service) sshFailure(ctx context.Context, ip, username, userID, why string) {
	s.obs.LoginFailed("ssh", "ssh")
	e := s.event(Principal{Method: "ssh", SourceIP: ip}, "auth.ssh_login", ResultFailure)
	e.ActorName, e.UserID, e.Message = truncate(username, 64), userID, why
	s.record(ctx, e)
}

// LoginAllowed is the one rule for "may this sign-in still act", shared by every door that
// keeps a sign-in open (the TUI door on each screen, the gateway on each new channel): the
// account may log in (active, not expired), and the credential it signed in with still
// stands: the SSH key is still the user's, the password or the host's SSH password has not
// changed, the access token is not revoked. It refreshes the principal's role and name.
func (s *Service) LoginAllowed(ctx context.Context, p Principal) (Principal, error) {
	if p.UserID == "" {
		return Principal{}, errUnauthenticated()
	}
	var u User
	credOK := true
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		u, err = tx.GetUser(p.UserID)
		if err != nil {
			return err
		}
		switch p.Method {
		case MethodSSHKey:
			keys, err := tx.ListSSHKeys(u.ID)
			if err != nil {
				return err
			}
			credOK = false
			for _, k := range keys {
				credOK = credOK || (p.KeyFP != "" && k.Fingerprint == p.KeyFP)
			}
		case MethodSSHPassword:
			credOK = p.Cred != "" && p.Cred == credDigest(u.PasswordHash)
		case MethodSSHHostPassword:
			h, err := tx.GetHost(p.CredHost)
			credOK = err == nil && h.UserID == u.ID && p.Cred != "" && p.Cred == credDigest(h.SSHPasswordHash)
		case MethodToken:
			t, err := tx.GetToken(p.TokenID)
			credOK = err == nil && t.UserID == u.ID && (t.ExpiresAt == nil || s.Now().Before(*t.ExpiresAt))
		}
		return nil
	})
	if err != nil || !credOK || !s.userMayLogin(u) {
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
		return Host{}, &Error{Kind: KindNotFound, Code: CodeNoHost, Message: "you have no host yet; ask an administrator to create one"}
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i].CreatedAt.Before(hs[j].CreatedAt) })
	return hs[0], nil
}

// EnsureHostRunning makes sure the caller's host runs, starting it (as a task) when it is
// stopped and the caller may, reporting progress lines to say. It fails with a plain reason
// when the host cannot be started.
func (s *Service) EnsureHostRunning(ctx context.Context, p Principal, hostID string, say func(string)) error {
	_, err := s.ensureRunning(ctx, p, hostID, say)
	return err
}

// ensureRunning is EnsureHostRunning that also returns what the engine said of the running
// container (its pid: a forward dials into its network namespace without asking again).
func (s *Service) ensureRunning(ctx context.Context, p Principal, hostID string, say func(string)) (RuntimeHost, error) {
	for attempt := 0; attempt < 3; attempt++ {
		var h Host
		if err := s.store.View(ctx, func(tx Tx) error {
			var err error
			h, err = tx.GetHost(hostID)
			return err
		}); err != nil {
			return RuntimeHost{}, err
		}
		if h.UserID != p.UserID {
			return RuntimeHost{}, notFound("host")
		}
		rh, err := s.runtime.Inspect(ctx, h.ID)
		if err != nil {
			return RuntimeHost{}, err
		}
		if rh.State == StateRunning && h.ActiveTaskID == "" {
			return rh, nil
		}
		taskID := h.ActiveTaskID
		if taskID == "" {
			if h.DesiredState == HostDeleted {
				return RuntimeHost{}, &Error{Kind: KindConflict, Code: CodeHostDeleting, Message: "this host is being deleted"}
			}
			res, err := s.StartOwnHost(ctx, p, h.ID)
			if err != nil {
				return RuntimeHost{}, err
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
			return RuntimeHost{}, err
		}
		for _, st := range t.Steps {
			say("  " + st.Name + ": " + st.State)
		}
		if t.State == TaskFailed && t.Error != nil && t.Kind == TaskHostStart {
			return RuntimeHost{}, &Error{Kind: KindUnavailable, Code: t.Error.Code, Message: "your workspace could not be started: " + t.Error.Message}
		}
	}
	return RuntimeHost{}, &Error{Kind: KindUnavailable, Code: CodeHostNotReady, Message: "your workspace did not become ready"}
}

// AuditGateway records a gateway session event (shell, exec, sftp, port forward).
func (s *Service) AuditGateway(ctx context.Context, p Principal, hostID, action, detail string) {
	e := s.event(p, action, ResultSuccess)
	e.UserID, e.HostID, e.TargetType, e.TargetID, e.Message = p.UserID, hostID, "host", hostID, truncate(detail, 200)
	s.record(ctx, e)
}
