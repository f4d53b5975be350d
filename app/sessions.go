package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"sync"
	"time"
)

// SessionKind names what an open session is. Every door registers what it opens, so the
// end of a right (a disabled account, a deleted key, a revoked token, a changed password, a
// deleted host, an administrator's kill) ends what it opened, whichever door opened it.
type SessionKind string

// Session kinds.
const (
	SessionShell     SessionKind = "shell"          // a login shell in a workspace (gateway or TUI door)
	SessionExec      SessionKind = "exec"           // a command in a workspace
	SessionSFTP      SessionKind = "sftp"           // the SFTP subsystem in a workspace
	SessionSubsystem SessionKind = "subsystem"      // another subsystem (refused today)
	SessionForward   SessionKind = "forward"        // a -L forward into a workspace's loopback
	SessionTUI       SessionKind = "tui"            // a TUI door session
	SessionVNC       SessionKind = "vnc"            // a browser desktop websocket
	SessionSSHConn   SessionKind = "ssh_connection" // an authenticated SSH connection (all its channels)
	SessionFeed      SessionKind = "feed"           // a change-feed stream (REST door, not counted)
)

func (k SessionKind) String() string { return string(k) }

// counted reports whether the kind counts against the per-user session limit: the
// processes a user runs in workspaces. Forwards, TUI screens, desktops and connections do not.
func (k SessionKind) counted() bool {
	switch k {
	case SessionShell, SessionExec, SessionSFTP, SessionSubsystem:
		return true
	}
	return false
}

// SessionInfo describes an open session: who opened it, with which credential, where.
type SessionInfo struct {
	ID        string      `json:"id"`
	Kind      SessionKind `json:"kind"`
	UserID    string      `json:"user_id"`
	Username  string      `json:"username"`
	Method    AuthMethod  `json:"auth_method"`
	KeyFP     string      `json:"key_fingerprint,omitempty"`
	TokenID   string      `json:"token_id,omitempty"`
	HostID    string      `json:"host_id,omitempty"`
	SourceIP  string      `json:"source_ip,omitempty"`
	Detail    string      `json:"detail,omitempty"`
	StartedAt time.Time   `json:"started_at"`

	cred   string // Principal.Cred of the opener
	jti    string
	credOn string // host id whose SSH password opened it (ssh_host_password)
	connID string // the SSH connection it runs on, if any
}

// Reasons a session is ended by app (sent to the client where the protocol has a way).
const (
	EndUserDisabled      = "your account was disabled"
	EndUserExpired       = "your account has expired"
	EndUserDeleted       = "your account was deleted"
	EndRoleChanged       = "your role was changed; sign in again"
	EndPasswordChanged   = "your password was changed; sign in again"
	EndKeyDeleted        = "the SSH key of this session was deleted"
	EndTokenRevoked      = "the access token of this session was revoked"
	EndHostPassword      = "the host's SSH password was changed"
	EndHostDeleted       = "this host was deleted"
	EndKilled            = "an administrator ended your sessions"
	EndCredentialExpired = "the credential of this session expired"
	EndShutdown          = "the server is shutting down"
)

// SessionLease is a registered session. The door closes it when the session ends by itself;
// Done is closed when app ended it (Reason says why) and the door must stop piping at once.
type SessionLease struct {
	svc    *Service
	info   SessionInfo
	end    func(reason string)
	once   sync.Once
	done   chan struct{}
	mu     sync.Mutex
	reason string
	seen   map[string]bool // forward destinations already audited (connections)
	expiry *time.Timer     // ends the session when its credential expires; nil: never
}

// Info describes the session.
func (l *SessionLease) Info() SessionInfo { return l.info }

// Done is closed when app ends the session.
func (l *SessionLease) Done() <-chan struct{} { return l.done }

// Reason is why app ended the session ("" while it is open).
func (l *SessionLease) Reason() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reason
}

// Close removes the session from the registry (it ended by itself). Safe to call twice.
func (l *SessionLease) Close() {
	if l == nil {
		return
	}
	l.svc.sessions.remove(l)
}

// terminate ends the session for reason: Done closes, then the door's end function runs.
func (l *SessionLease) terminate(reason string) {
	l.once.Do(func() {
		l.mu.Lock()
		l.reason = reason
		l.mu.Unlock()
		close(l.done)
		if l.end != nil {
			l.end(reason)
		}
	})
}

// sessionRegistry holds every open session of this process.
type sessionRegistry struct {
	mu      sync.Mutex
	byID    map[string]*SessionLease
	counted map[string]int // user id -> counted sessions
	hangups chan struct{}  // bounds concurrent process hang-ups
	obs     Observer       // told of sessions opened and closed
}

func newSessionRegistry(obs Observer) *sessionRegistry {
	return &sessionRegistry{byID: map[string]*SessionLease{}, counted: map[string]int{}, hangups: make(chan struct{}, 8), obs: obs}
}

func (r *sessionRegistry) remove(l *SessionLease) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.byID[l.info.ID]; !ok {
		return
	}
	delete(r.byID, l.info.ID)
	if l.expiry != nil {
		l.expiry.Stop()
	}
	r.obs.SessionClosed(SessionDoor(l.info.Kind, l.info.connID), string(l.info.Kind))
	if l.info.Kind.counted() {
		if r.counted[l.info.UserID]--; r.counted[l.info.UserID] <= 0 {
			delete(r.counted, l.info.UserID)
		}
	}
}

// SessionLimitError is the refusal of a session over a configured limit.
func (s *Service) sessionLimitError() *Error {
	return &Error{Kind: KindRateLimited, Code: CodeTooManySessions,
		Message: fmt.Sprintf("too many open sessions: the limit SSH_MAX_SESSIONS_PER_USER=%d is reached; close one and try again", s.cfg.MaxSessionsPerUser)}
}

// TrackSession registers a session p opens; end is called (once, from app) when the right
// it depends on ends, and must make the door stop at once (tell the client, close the
// channel or socket). Counted kinds are refused over the per-user limit. connID names the
// SSH connection the session runs on ("" for none).
func (s *Service) TrackSession(p Principal, kind SessionKind, hostID, connID, detail string, end func(reason string)) (*SessionLease, error) {
	if !p.IsAuthenticated() {
		return nil, errUnauthenticated()
	}
	l := &SessionLease{
		svc: s, end: end, done: make(chan struct{}),
		info: SessionInfo{
			ID: newID(), Kind: kind, UserID: p.UserID, Username: p.Username, Method: p.Method,
			KeyFP: p.KeyFP, TokenID: p.TokenID, HostID: hostID, SourceIP: p.SourceIP,
			Detail: truncate(detail, 120), StartedAt: s.Now(),
			cred: p.Cred, jti: p.JTI, credOn: p.CredHost, connID: connID,
		},
	}
	r := s.sessions
	r.mu.Lock()
	defer r.mu.Unlock()
	if kind.counted() {
		if max := s.cfg.MaxSessionsPerUser; max > 0 && r.counted[p.UserID] >= max {
			s.refused(kind, connID, "limit")
			return nil, s.sessionLimitError()
		}
		r.counted[p.UserID]++
	}
	r.byID[l.info.ID] = l
	r.obs.SessionOpened(SessionDoor(kind, connID), string(kind))
	// A session never outlives the credential it was opened with: a login JWT or an access
	// token that expires ends it then (an account's own expiry is the expiry scanner's).
	if exp := credentialExpiry(p); !exp.IsZero() {
		id := l.info.ID
		l.expiry = time.AfterFunc(max(exp.Sub(s.Now()), 0), func() {
			s.endSessions(context.Background(), systemPrincipal(), func(i SessionInfo) bool { return i.ID == id }, EndCredentialExpired)
		})
	}
	return l, nil
}

// credentialExpiry is when p's credential stops working (zero: never, or not known here).
func credentialExpiry(p Principal) time.Time {
	switch p.Method {
	case MethodJWT:
		return p.JWTExpiry
	case MethodToken:
		return p.TokenExpiresAt
	}
	return time.Time{}
}

// sessionsWhere lists the open sessions that match.
func (s *Service) sessionsWhere(match func(SessionInfo) bool) []*SessionLease {
	r := s.sessions
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*SessionLease
	for _, l := range r.byID {
		if match(l.info) {
			out = append(out, l)
		}
	}
	return out
}

// endSessions ends every open session that match selects, with reason, and records one
// session.end event for each (actor p). Sessions on a connection are told first; the SSH
// connections themselves are closed last, so their clients read the reason. It returns how
// many sessions it ended.
func (s *Service) endSessions(ctx context.Context, p Principal, match func(SessionInfo) bool, reason string) int {
	ls := s.sessionsWhere(match)
	if len(ls) == 0 {
		return 0
	}
	sort.SliceStable(ls, func(i, j int) bool {
		return ls[i].info.Kind != SessionSSHConn && ls[j].info.Kind == SessionSSHConn
	})
	var wg sync.WaitGroup
	conns := false
	for _, l := range ls {
		if l.info.Kind == SessionSSHConn && !conns {
			// Let the channels' messages go out before the connections close.
			conns = true
			waitTimeout(&wg, 500*time.Millisecond)
		}
		s.sessions.remove(l)
		wg.Add(1)
		go func(l *SessionLease) {
			defer wg.Done()
			l.terminate(reason)
		}(l)
	}
	waitTimeout(&wg, 500*time.Millisecond)
	err := s.store.Update(ctx, func(tx Tx) error {
		for _, l := range ls {
			e := s.event(p, "session.end", ResultSuccess)
			e.UserID, e.HostID, e.TargetType, e.TargetID = l.info.UserID, l.info.HostID, "session", l.info.ID
			e.Message = truncate(string(l.info.Kind)+" ("+l.info.Method.String()+"): "+reason, 200)
			if err := tx.AddEvent(&e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.log.Error("audit of ended sessions failed", "err", err)
	}
	return len(ls)
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	c := make(chan struct{})
	go func() { wg.Wait(); close(c) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c:
	case <-t.C:
	}
}

// Matchers of the rights whose end ends sessions.
func sessionsOfUser(userID string) func(SessionInfo) bool {
	return func(i SessionInfo) bool { return i.UserID == userID }
}

// passwordSessions are the sessions that stand on the user's password: SSH password logins,
// API logins (JWTs) and the desktops opened with them.
func passwordSessions(userID string) func(SessionInfo) bool {
	return func(i SessionInfo) bool {
		return i.UserID == userID && (i.Method == MethodSSHPassword || i.Method == MethodPassword || i.Method == MethodJWT)
	}
}

func keySessions(userID, fp string) func(SessionInfo) bool {
	return func(i SessionInfo) bool { return i.UserID == userID && i.KeyFP == fp }
}

func tokenSessions(tokenID string) func(SessionInfo) bool {
	return func(i SessionInfo) bool { return i.TokenID != "" && i.TokenID == tokenID }
}

func hostPasswordSessions(hostID string) func(SessionInfo) bool {
	return func(i SessionInfo) bool { return i.Method == MethodSSHHostPassword && i.credOn == hostID }
}

func hostSessions(hostID string) func(SessionInfo) bool {
	return func(i SessionInfo) bool { return i.HostID == hostID || (i.credOn != "" && i.credOn == hostID) }
}

func tuiSessionsOf(userID string) func(SessionInfo) bool {
	return func(i SessionInfo) bool {
		return i.UserID == userID && (i.Kind == SessionTUI || i.Kind == SessionVNC)
	}
}

// ListSessions lists the caller's own open sessions.
func (s *Service) ListSessions(ctx context.Context, p Principal) ([]SessionInfo, error) {
	if err := s.requireAuth(p); err != nil {
		return nil, err
	}
	return s.listSessions(p.UserID), nil
}

// AdminListSessions lists open sessions for admins and viewers: one user's, or every one
// when userID is "".
func (s *Service) AdminListSessions(ctx context.Context, p Principal, userID string) ([]SessionInfo, error) {
	if err := s.requireAdminRead(p); err != nil {
		return nil, err
	}
	return s.listSessions(userID), nil
}

func (s *Service) listSessions(userID string) []SessionInfo {
	ls := s.sessionsWhere(func(i SessionInfo) bool { return userID == "" || i.UserID == userID })
	out := make([]SessionInfo, 0, len(ls))
	for _, l := range ls {
		out = append(out, l.info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].StartedAt.Before(out[j].StartedAt) })
	return out
}

// KillUserSessions ends every open session of a user at once (admins). It returns how many
// it ended.
func (s *Service) KillUserSessions(ctx context.Context, p Principal, userID string) (int, error) {
	if err := s.requireAdminWrite(ctx, p, "session.kill"); err != nil {
		return 0, err
	}
	var u User
	if err := s.store.View(ctx, func(tx Tx) error {
		var err error
		u, err = tx.GetUser(userID)
		return err
	}); err != nil {
		return 0, err
	}
	n := s.endSessions(ctx, p, sessionsOfUser(u.ID), EndKilled)
	e := s.event(p, "session.kill", ResultSuccess)
	e.TargetType, e.TargetID, e.UserID, e.Message = "user", u.ID, u.ID, fmt.Sprintf("%s: %d sessions ended", u.Username, n)
	s.record(ctx, e)
	return n, nil
}

// EndAllSessions tells every open session the server is going down and ends it (SIGTERM).
func (s *Service) EndAllSessions(ctx context.Context) int {
	return s.endSessions(ctx, systemPrincipal(), func(SessionInfo) bool { return true }, EndShutdown)
}

// credDigest is a short digest of a stored secret hash: a principal carries it so a later
// check sees whether the secret it signed in with has changed since.
func credDigest(hash string) string {
	if hash == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(hash))
	return hex.EncodeToString(sum[:8])
}

// revokeUserTokens deletes every access token of a user inside tx: a changed password or a
// disabled account ends them for good (enabling the account again does not bring them back).
func (s *Service) revokeUserTokens(tx Tx, p Principal, userID, why string) error {
	toks, err := tx.ListTokens(userID)
	if err != nil {
		return err
	}
	for _, t := range toks {
		if err := tx.DeleteToken(t.ID); err != nil {
			return err
		}
		e := s.event(p, "token.revoke", ResultSuccess)
		e.TargetType, e.TargetID, e.UserID, e.Message = "token", t.ID, t.UserID, truncate(t.Name+": "+why, 200)
		if err := tx.AddEvent(&e); err != nil {
			return err
		}
	}
	return nil
}

// userTokenSessions are the sessions opened with any of a user's access tokens.
func userTokenSessions(userID string) func(SessionInfo) bool {
	return func(i SessionInfo) bool { return i.UserID == userID && i.Method == MethodToken }
}

func either(a, b func(SessionInfo) bool) func(SessionInfo) bool {
	return func(i SessionInfo) bool { return a(i) || b(i) }
}

// AuthorizeMetrics decides who may read the server's metrics on the API port: administrators
// (a viewer is refused: the metrics name users, hosts and egress IPs in bulk).
func (s *Service) AuthorizeMetrics(ctx context.Context, p Principal) error {
	if err := s.requireAdminRead(p); err != nil {
		return err
	}
	if p.Role != RoleAdmin {
		s.denied(ctx, p, "metrics.read", "the metrics are for administrators")
		return forbidden("the metrics are for administrators")
	}
	return nil
}
