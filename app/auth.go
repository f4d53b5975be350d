package app

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"
)

const jwtAudience = "cloud-cli-proxy-api"

type jwtClaims struct {
	Role    string `json:"role"`
	Version int64  `json:"ver"`
	jwt.RegisteredClaims
}

// LoginResult is what a successful login returns.
type LoginResult struct {
	Token     string `json:"token"`
	Role      string `json:"role"`
	ExpiresIn int64  `json:"expires_in"`
	UserID    string `json:"user_id"`
	Username  string `json:"username"`
}

// Login checks a username and password and issues a JWT.
func (s *Service) Login(ctx context.Context, ip, username, password string) (LoginResult, error) {
	now := s.Now()
	if wait := s.throttle.blocked(now, "ip:"+ip, "user:"+username); wait > 0 {
		e := s.event(Anonymous(ip), "auth.login", ResultDenied)
		e.ActorName = truncate(username, 64)
		e.Message = "throttled"
		s.record(ctx, e)
		return LoginResult{}, &Error{Kind: KindRateLimited, Code: "too_many_attempts", Message: "too many failed logins; try again later", RetryAfter: wait}
	}
	u, err := s.CheckPassword(ctx, username, password)
	if err != nil {
		s.throttle.fail(now, "ip:"+ip, "user:"+username)
		e := s.event(Anonymous(ip), "auth.login", ResultFailure)
		e.ActorName = truncate(username, 64)
		if u.ID != "" {
			e.ActorID, e.UserID = u.ID, u.ID
		}
		e.Message = "invalid credentials"
		s.record(ctx, e)
		return LoginResult{}, errUnauthenticated()
	}
	s.throttle.succeed("user:" + username)
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
		return badRequest("not_a_session", "only a login session can be logged out; revoke access tokens instead")
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
		return LoginResult{}, badRequest("not_a_session", "only a login session can be refreshed")
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
	e := s.event(Principal{Method: method, SourceIP: ip}, "auth.failure", ResultFailure)
	e.Message = why
	s.record(ctx, e)
}

// loginThrottle slows down password guessing per IP and per username, with exponential
// back-off after a few failures.
type loginThrottle struct {
	mu      sync.Mutex
	entries map[string]*throttleEntry
}

type throttleEntry struct {
	failures int
	until    time.Time
	last     time.Time
}

const (
	throttleFree = 5
	throttleMax  = 15 * time.Minute
)

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
		if e.failures >= throttleFree {
			d := time.Second << min(e.failures-throttleFree, 10)
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
