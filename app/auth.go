package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"
)

const jwtAudience = "cloud-cli-proxy-api"

type jwtClaims struct {
	Role    Role  `json:"role"`
	Version int64 `json:"ver"`
	jwt.RegisteredClaims
}

// LoginResult is what a successful login returns.
type LoginResult struct {
	Token     string `json:"token"`
	Role      Role   `json:"role"`
	ExpiresIn int64  `json:"expires_in"`
	UserID    string `json:"user_id"`
	Username  string `json:"username"`
}

// Login checks a username and password and issues a JWT.
func (s *Service) Login(ctx context.Context, ip, username, password string) (LoginResult, error) {
	now := s.Now()
	keys := throttleKeys("", ip, username)
	if v := s.throttle.check(now, keys...); v.wait > 0 {
		s.throttled(ctx, "auth.login", ip, username, v)
		return LoginResult{}, tooManyAttempts(v.wait)
	}
	u, err := s.CheckPassword(ctx, username, password)
	if err != nil {
		s.throttle.fail(now, keys...)
		s.obs.LoginFailed("api", "password")
		e := s.event(Anonymous(ip), "auth.login", ResultFailure)
		e.ActorName = truncate(username, 64)
		if u.ID != "" {
			e.ActorID, e.UserID = u.ID, u.ID
		}
		e.Message = "invalid credentials"
		s.record(ctx, e)
		return LoginResult{}, errUnauthenticated()
	}
	s.throttle.succeed(keys[0])
	tok, _, err := s.issueJWT(u)
	if err != nil {
		return LoginResult{}, err
	}
	p := Principal{UserID: u.ID, Username: u.Username, Role: u.Role, Method: "password", SourceIP: ip}
	e := s.event(p, "auth.login", ResultSuccess)
	e.UserID = u.ID
	s.record(ctx, e)
	return LoginResult{Token: tok, Role: u.Role, ExpiresIn: int64(s.cfg.JWTTTL / time.Second), UserID: u.ID, Username: u.Username}, nil
}

// CheckPassword verifies a user's password and that the account may log in. On failure the
// returned user may be partially filled (for audit) and the error is always the generic one.
func (s *Service) CheckPassword(ctx context.Context, username, password string) (User, error) {
	var u User
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		u, err = tx.GetUserByName(username)
		return err
	})
	if err != nil {
		_ = bcrypt.CompareHashAndPassword(s.dummyHash, []byte(password))
		return User{}, errUnauthenticated()
	}
	if bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(password)) != nil {
		return User{ID: u.ID}, errUnauthenticated()
	}
	if !s.userMayLogin(u) {
		return User{ID: u.ID}, errUnauthenticated()
	}
	return u, nil
}

func (s *Service) userMayLogin(u User) bool {
	if u.Status != UserActive {
		return false
	}
	if u.ExpiresAt != nil && !s.Now().Before(*u.ExpiresAt) {
		return false
	}
	return true
}

func (s *Service) issueJWT(u User) (string, time.Time, error) {
	now := s.Now()
	exp := now.Add(s.cfg.JWTTTL)
	claims := jwtClaims{
		Role: u.Role, Version: u.Version,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: s.cfg.JWTIssuer, Subject: u.ID, Audience: jwt.ClaimStrings{jwtAudience},
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
			ExpiresAt: jwt.NewNumericDate(exp), ID: newID(),
		},
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(s.cfg.JWTSecret)
	return tok, exp, err
}

// Authenticate turns a bearer credential (a JWT or an access token) into a Principal. Every
// failure is the same generic error.
func (s *Service) Authenticate(ctx context.Context, ip, bearer string) (Principal, error) {
	return s.AuthenticateRequest(ctx, ip, "", bearer)
}

// AuthenticateRequest is Authenticate for a door that knows the route asked for ("GET
// /v1/tokens"): an access token's use is counted under it in the usage audit (aggregated in
// memory per token and minute, written by FlushTokenUse).
func (s *Service) AuthenticateRequest(ctx context.Context, ip, route, bearer string) (Principal, error) {
	if strings.HasPrefix(bearer, TokenPrefix) {
		return s.authenticateToken(ctx, ip, route, bearer)
	}
	if strings.Count(bearer, ".") == 2 {
		return s.authenticateJWT(ctx, ip, bearer)
	}
	return Principal{}, errUnauthenticated()
}

func (s *Service) authenticateJWT(ctx context.Context, ip, raw string) (Principal, error) {
	var c jwtClaims
	_, err := jwt.ParseWithClaims(raw, &c, func(*jwt.Token) (any, error) { return s.cfg.JWTSecret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(s.cfg.JWTIssuer), jwt.WithAudience(jwtAudience),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt(),
		jwt.WithTimeFunc(s.Now), jwt.WithLeeway(5*time.Second))
	if err != nil || c.Subject == "" || c.ID == "" {
		return Principal{}, errUnauthenticated()
	}
	var u User
	err = s.store.View(ctx, func(tx Tx) error {
		revoked, err := tx.IsJWTRevoked(c.ID)
		if err != nil {
			return err
		}
		if revoked {
			return errUnauthenticated()
		}
		u, err = tx.GetUser(c.Subject)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnauthenticated) {
			return Principal{}, errUnauthenticated()
		}
		return Principal{}, err
	}
	if u.Version != c.Version || !s.userMayLogin(u) {
		return Principal{}, errUnauthenticated()
	}
	return Principal{UserID: u.ID, Username: u.Username, Role: u.Role, Method: "jwt", JTI: c.ID,
		JWTExpiry: c.ExpiresAt.Time, SourceIP: ip}, nil
}

// Logout revokes the JWT the caller used; it stops working at once.
func (s *Service) Logout(ctx context.Context, p Principal) error {
	if err := s.requireAuth(p); err != nil {
		return err
	}
	if p.Method != "jwt" {
		return badRequest(CodeNotASession, "only a login session can be logged out; revoke access tokens instead")
	}
	return s.store.Update(ctx, func(tx Tx) error {
		if err := tx.RevokeJWT(p.JTI, p.JWTExpiry); err != nil {
			return err
		}
		e := s.event(p, "auth.logout", ResultSuccess)
		e.UserID = p.UserID
		return tx.AddEvent(&e)
	})
}

// Refresh issues a fresh JWT for a login session and revokes the old one.
func (s *Service) Refresh(ctx context.Context, p Principal) (LoginResult, error) {
	if err := s.requireAuth(p); err != nil {
		return LoginResult{}, err
	}
	if p.Method != "jwt" {
		return LoginResult{}, badRequest(CodeNotASession, "only a login session can be refreshed")
	}
	var out LoginResult
	err := s.store.Update(ctx, func(tx Tx) error {
		u, err := tx.GetUser(p.UserID)
		if err != nil {
			return errUnauthenticated()
		}
		tok, _, err := s.issueJWT(u)
		if err != nil {
			return err
		}
		if err := tx.RevokeJWT(p.JTI, p.JWTExpiry); err != nil {
			return err
		}
		e := s.event(p, "auth.refresh", ResultSuccess)
		e.UserID = u.ID
		out = LoginResult{Token: tok, Role: u.Role, ExpiresIn: int64(s.cfg.JWTTTL / time.Second), UserID: u.ID, Username: u.Username}
		return tx.AddEvent(&e)
	})
	return out, err
}

// Me returns the caller's own account.
func (s *Service) Me(ctx context.Context, p Principal) (UserView, error) {
	if err := s.requireAuth(p); err != nil {
		return UserView{}, err
	}
	var u User
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		u, err = tx.GetUser(p.UserID)
		return err
	})
	if err != nil {
		return UserView{}, err
	}
	return viewUser(u), nil
}

// RecordAuthFailure audits a rejected credential seen by a door.
func (s *Service) RecordAuthFailure(ctx context.Context, ip, method, why string) {
	s.obs.LoginFailed("api", method)
	e := s.event(Principal{Method: AuthMethod(method), SourceIP: ip}, "auth.failure", ResultFailure)
	e.Message = why
	s.record(ctx, e)
}

// loginThrottle slows down password guessing with exponential back-off after a few
// failures, counted per key. Keys are per (IP, username) ("ipuser:"), per username ("user:")
// and per IP ("ip:"), each class with its own free allowance: one user's typos lock out
// only that user from that address, a username under attack from many addresses is slowed
// down, and the much higher per-IP ceiling never stops the admin behind the same NAT.
type loginThrottle struct {
	mu      sync.Mutex
	entries map[string]*throttleEntry
}

type throttleEntry struct {
	failures int
	until    time.Time
	last     time.Time
	refused  int       // refused attempts since the last throttle event of this key
	reported time.Time // the window (its until) the last throttle event was for
}

const (
	throttleFree     = 5  // per (IP, username)
	throttleFreeUser = 20 // per username, from anywhere
	throttleFreeIP   = 100
	throttleMax      = 15 * time.Minute
)

// throttleFreeOf is the number of failures a key allows before it backs off.
func throttleFreeOf(key string) int {
	switch {
	case strings.HasPrefix(key, "ip:"), strings.HasPrefix(key, "sship:"):
		return throttleFreeIP
	case strings.HasPrefix(key, "user:"), strings.HasPrefix(key, "sshuser:"):
		return throttleFreeUser
	}
	return throttleFree
}

// throttleKeys are the keys of a sign-in of username from ip through a door ("" for the
// REST API, "ssh" for the SSH doors): per (IP, username), per username, per IP.
func throttleKeys(door, ip, username string) []string {
	return []string{door + "ipuser:" + ip + "|" + username, door + "user:" + username, door + "ip:" + ip}
}

// throttleVerdict is a refusal of the throttle: how long to wait, and whether this refusal
// is the first of its window (the one that gets an audit event; with it, how many were
// refused without one in the window before).
type throttleVerdict struct {
	wait         time.Duration
	report       bool
	unreported   int
	blockedUntil time.Time
}

// check is blocked for a door that audits: it tells which refusal to record.
func (t *loginThrottle) check(now time.Time, keys ...string) throttleVerdict {
	t.mu.Lock()
	defer t.mu.Unlock()
	var v throttleVerdict
	var worst *throttleEntry
	for _, k := range keys {
		if e := t.entries[k]; e != nil && now.Before(e.until) {
			if d := e.until.Sub(now); d > v.wait {
				v.wait, worst = d, e
			}
		}
	}
	if worst == nil {
		return v
	}
	v.blockedUntil = worst.until
	if worst.reported.Equal(worst.until) {
		worst.refused++
		return v
	}
	v.report, v.unreported = true, worst.refused
	worst.refused, worst.reported = 0, worst.until
	return v
}

func newLoginThrottle() *loginThrottle { return &loginThrottle{entries: map[string]*throttleEntry{}} }

func (t *loginThrottle) blocked(now time.Time, keys ...string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	var wait time.Duration
	for _, k := range keys {
		if e := t.entries[k]; e != nil && now.Before(e.until) {
			if d := e.until.Sub(now); d > wait {
				wait = d
			}
		}
	}
	return wait
}

func (t *loginThrottle) fail(now time.Time, keys ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.entries) > 100000 {
		for k, e := range t.entries {
			if now.Sub(e.last) > time.Hour {
				delete(t.entries, k)
			}
		}
	}
	for _, k := range keys {
		e := t.entries[k]
		if e == nil || now.Sub(e.last) > time.Hour {
			e = &throttleEntry{}
			t.entries[k] = e
		}
		e.failures++
		e.last = now
		if free := throttleFreeOf(k); e.failures >= free {
			d := time.Second << min(e.failures-free, 10)
			if d > throttleMax {
				d = throttleMax
			}
			e.until = now.Add(d)
		}
	}
}

func (t *loginThrottle) succeed(keys ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range keys {
		delete(t.entries, k)
	}
}

// truncate cuts s to at most n characters (never inside one).
func truncate(s string, n int) string {
	i := 0
	for j := range s {
		if i == n {
			return s[:j]
		}
		i++
	}
	return s
}

func tooManyAttempts(wait time.Duration) *Error {
	return &Error{Kind: KindRateLimited, Code: CodeTooManyAttempts, Message: "too many failed logins; try again later", RetryAfter: wait}
}

// throttled records the first refused sign-in of a throttle window as one event; the later
// ones of the window are only counted, and that count goes into the next window's event.
func (s *Service) throttled(ctx context.Context, action, ip, username string, v throttleVerdict) {
	if !v.report {
		return
	}
	e := s.event(Anonymous(ip), action, ResultDenied)
	e.ActorName = truncate(username, 64)
	e.Message = "throttled until " + v.blockedUntil.UTC().Format(time.RFC3339)
	if v.unreported > 0 {
		e.Message += fmt.Sprintf("; %d more attempts were refused in the previous window", v.unreported)
	}
	s.record(ctx, e)
}
