package app

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"hash/crc32"
	"math/big"
	"strings"
	"time"
)

// Access-token format: TokenPrefix, tokenRandomLen base62 characters from crypto/rand, then
// tokenCheckLen base62 characters of the CRC32 of the random part. The checksum lets a
// malformed value be refused without touching storage and lets secret scanners match it.
const (
	TokenPrefix    = "ccp_"
	tokenRandomLen = 36
	tokenCheckLen  = 6
	tokenLen       = len(TokenPrefix) + tokenRandomLen + tokenCheckLen
	base62         = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// TokenExpiryPresets lists the accepted expires_in_days values.
func TokenExpiryPresets() []int { return []int{7, 30, 60, 90} }

// TokenDefaultExpiryDays is the lifetime of a token created without an expiry (never more
// than TokenMaxLifetime).
const TokenDefaultExpiryDays = 30

// TokenExpiryChoices are the expiries a new token may be given on this server: the
// TokenExpiryPresets within TokenMaxLifetime, and whether "never" is allowed.
func (s *Service) TokenExpiryChoices() (days []int, never bool) {
	limit := s.cfg.TokenMaxLifetime
	for _, d := range TokenExpiryPresets() {
		if limit <= 0 || time.Duration(d)*24*time.Hour <= limit {
			days = append(days, d)
		}
	}
	return days, limit <= 0
}

func base62Fixed(v uint32, n int) string {
	b := make([]byte, n)
	for i := n - 1; i >= 0; i-- {
		b[i] = base62[v%62]
		v /= 62
	}
	return string(b)
}

// NewTokenValue makes a fresh access-token value.
func NewTokenValue() string {
	var sb strings.Builder
	sb.WriteString(TokenPrefix)
	max := big.NewInt(62)
	for i := 0; i < tokenRandomLen; i++ {
		k, err := rand.Int(rand.Reader, max)
		if err != nil {
			panic(err) // crypto/rand never fails on supported platforms
		}
		sb.WriteByte(base62[k.Int64()])
	}
	body := sb.String()[len(TokenPrefix):]
	sb.WriteString(base62Fixed(crc32.ChecksumIEEE([]byte(body)), tokenCheckLen))
	return sb.String()
}

// WellFormedToken checks prefix, length, alphabet and checksum without any lookup.
func WellFormedToken(v string) bool {
	if len(v) != tokenLen || !strings.HasPrefix(v, TokenPrefix) {
		return false
	}
	rest := v[len(TokenPrefix):]
	for i := 0; i < len(rest); i++ {
		if strings.IndexByte(base62, rest[i]) < 0 {
			return false
		}
	}
	body, sum := rest[:tokenRandomLen], rest[tokenRandomLen:]
	want := base62Fixed(crc32.ChecksumIEEE([]byte(body)), tokenCheckLen)
	return subtle.ConstantTimeCompare([]byte(sum), []byte(want)) == 1
}

func (s *Service) hashToken(v string) string {
	m := hmac.New(sha256.New, s.cfg.TokenHashKey)
	m.Write([]byte(v))
	return hex.EncodeToString(m.Sum(nil))
}

// HashTokenValue is the stored hash of an access-token value (the HMAC under the service's
// TokenHashKey), for tools that load tokens directly into a store, such as the bench.
func (s *Service) HashTokenValue(v string) string { return s.hashToken(v) }

// TokenView is an access token as clients see it; never its value.
type TokenView struct {
	ID         string     `json:"id"`
	UserID     string     `json:"user_id"`
	Name       string     `json:"name"`
	Hint       string     `json:"hint"`
	Write      bool       `json:"write"`
	Active     bool       `json:"active"`
	Expired    bool       `json:"expired"`
	ExpiresAt  *time.Time `json:"expires_at"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	LastUsedIP string     `json:"last_used_ip"`
}

func (s *Service) viewToken(t AccessToken) TokenView {
	t.LastUsedAt, t.LastUsedIP = s.tokenUse.lastUsed(t.ID, t.LastUsedAt, t.LastUsedIP)
	return TokenView{ID: t.ID, UserID: t.UserID, Name: t.Name, Hint: t.Hint, Write: t.Write, Active: t.Active,
		Expired: t.ExpiresAt != nil && !s.Now().Before(*t.ExpiresAt), ExpiresAt: t.ExpiresAt,
		CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt, LastUsedAt: t.LastUsedAt, LastUsedIP: t.LastUsedIP}
}

// CreatedToken carries a new token's value, shown once.
type CreatedToken struct {
	TokenView
	Token string `json:"token"`
}

// TokenInput is the body of a token creation or update. ExpiresAt is "YYYY-MM-DD", "never"
// or null; absent keeps the default (30 days on creation, unchanged on update).
type TokenInput struct {
	Name          *string         `json:"name"`
	ExpiresInDays *int            `json:"expires_in_days"`
	ExpiresAt     json.RawMessage `json:"expires_at"`
	Write         *bool           `json:"write"`
	Active        *bool           `json:"active"`
}

// tokenExpiry resolves the input's expiry. set is false when the input says nothing about
// it. field is what the client calls expires_at (errors name it).
func (s *Service) tokenExpiry(in TokenInput, field string) (at *time.Time, set bool, err error) {
	today := s.Now().Truncate(24 * time.Hour)
	if in.ExpiresInDays != nil && len(in.ExpiresAt) > 0 {
		return nil, false, invalid(field, "give expires_in_days or %s, not both", field)
	}
	if in.ExpiresInDays != nil {
		ok := false
		for _, d := range TokenExpiryPresets() {
			ok = ok || d == *in.ExpiresInDays
		}
		if !ok {
			return nil, false, invalid("expires_in_days", "expires_in_days must be 7, 30, 60 or 90")
		}
		t := today.AddDate(0, 0, *in.ExpiresInDays)
		return &t, true, nil
	}
	if len(in.ExpiresAt) == 0 {
		return nil, false, nil
	}
	raw := strings.TrimSpace(string(in.ExpiresAt))
	if raw == "null" {
		return nil, true, nil
	}
	var str string
	if err := json.Unmarshal(in.ExpiresAt, &str); err != nil {
		return nil, false, invalid(field, `%s must be "YYYY-MM-DD", "never" or null`, field)
	}
	if str == "never" {
		return nil, true, nil
	}
	d, err := time.Parse(time.DateOnly, str)
	if err != nil {
		return nil, false, invalid(field, `%s must be "YYYY-MM-DD", "never" or null`, field)
	}
	if !d.After(s.Now()) {
		return nil, false, invalid(field, "%s must be a future date (tokens stop at 00:00 UTC of that day)", field)
	}
	return &d, true, nil
}

// checkLifetime applies the server's maximum lifetime and the rule that a token cannot make
// one that outlives it; field names the expiry as the client sent it.
func (s *Service) checkLifetime(p Principal, at *time.Time, field string) error {
	if s.cfg.TokenMaxLifetime > 0 {
		if at == nil {
			return invalid(field, "tokens that never expire are not allowed on this server")
		}
		if at.After(s.Now().Add(s.cfg.TokenMaxLifetime)) {
			return invalid(field, "%s exceeds this server's maximum token lifetime of %d days", field, int(s.cfg.TokenMaxLifetime/(24*time.Hour)))
		}
	}
	if p.Method == "token" && p.TokenID != "" {
		if parentExp := s.tokenExpiryOf(p.TokenID); parentExp != nil && (at == nil || at.After(*parentExp)) {
			return &Error{Kind: KindForbidden, Code: CodeInsufficientScope, Message: "a token cannot create a token that outlives itself"}
		}
	}
	return nil
}

func (s *Service) tokenExpiryOf(id string) *time.Time {
	var at *time.Time
	_ = s.store.View(context.Background(), func(tx Tx) error {
		t, err := tx.GetToken(id)
		if err == nil {
			at = t.ExpiresAt
		}
		return nil
	})
	return at
}

func validateTokenName(name string) error { return validateText("name", name, 1, 64) }

// tokenForm is how a door's body speaks of a token: what it calls the expiry (errors name
// it) and whether a creation may ask for an inactive token.
type tokenForm struct {
	expiryField   string
	inactiveNewOK bool
}

// nativeForm is the /v1/tokens body.
var nativeForm = tokenForm{expiryField: "expires_at"}

// CreateToken makes an access token for the caller and returns its value once.
func (s *Service) CreateToken(ctx context.Context, p Principal, in TokenInput) (CreatedToken, error) {
	return s.createToken(ctx, p, in, nativeForm)
}

// createToken makes a token in one transaction, inactive when the form allows it and the
// input asks for it.
func (s *Service) createToken(ctx context.Context, p Principal, in TokenInput, form tokenForm) (CreatedToken, error) {
	if err := s.requireSelfWrite(ctx, p, "token.create"); err != nil {
		return CreatedToken{}, err
	}
	name := ""
	if in.Name != nil {
		name = strings.TrimSpace(*in.Name)
	}
	if err := validateTokenName(name); err != nil {
		return CreatedToken{}, err
	}
	active := in.Active == nil || *in.Active
	if !active && !form.inactiveNewOK {
		return CreatedToken{}, invalid("active", "a new token is active; deactivate it afterwards")
	}
	// A viewer can only read, so a viewer's token is read-only unless asked otherwise (the
	// flag is kept as asked and intersected with the role on every use, so a later promotion
	// applies at once).
	write := p.Role != RoleViewer
	if in.Write != nil {
		write = *in.Write
	}
	if p.Method == "token" && write && !p.TokenWrite {
		return CreatedToken{}, &Error{Kind: KindForbidden, Code: CodeInsufficientScope, Message: "a read-only token cannot create a write token"}
	}
	at, set, err := s.tokenExpiry(in, form.expiryField)
	if err != nil {
		return CreatedToken{}, err
	}
	if !set {
		t := s.Now().Truncate(24*time.Hour).AddDate(0, 0, TokenDefaultExpiryDays)
		if max := s.cfg.TokenMaxLifetime; max > 0 && t.After(s.Now().Add(max)) {
			// The default never exceeds the operator's maximum lifetime.
			t = s.Now().Add(max).Truncate(24 * time.Hour)
		}
		at = &t
	}
	if err := s.checkLifetime(p, at, form.expiryField); err != nil {
		return CreatedToken{}, err
	}
	value := NewTokenValue()
	now := s.Now()
	t := AccessToken{ID: newID(), UserID: p.UserID, Name: name, Hash: s.hashToken(value),
		Hint: "…" + value[len(value)-4:], Write: write, Active: active, ExpiresAt: at, CreatedAt: now, UpdatedAt: now}
	err = s.store.Update(ctx, func(tx Tx) error {
		if err := tx.PutToken(t); err != nil {
			return err
		}
		e := s.event(p, "token.create", ResultSuccess)
		e.TargetType, e.TargetID, e.UserID, e.Message = "token", t.ID, t.UserID, t.Name
		return tx.AddEvent(&e)
	})
	if err != nil {
		return CreatedToken{}, err
	}
	return CreatedToken{TokenView: s.viewToken(t), Token: value}, nil
}

// ListTokens lists the caller's tokens.
func (s *Service) ListTokens(ctx context.Context, p Principal) ([]TokenView, error) {
	if err := s.requireAuth(p); err != nil {
		return nil, err
	}
	return s.listTokens(ctx, p.UserID)
}

// ListAllTokens lists every user's tokens (admins, viewers), optionally for one user.
func (s *Service) ListAllTokens(ctx context.Context, p Principal, userID string) ([]TokenView, error) {
	if err := s.requireAdminRead(p); err != nil {
		return nil, err
	}
	return s.listTokens(ctx, userID)
}

func (s *Service) listTokens(ctx context.Context, userID string) ([]TokenView, error) {
	out := []TokenView{}
	err := s.store.View(ctx, func(tx Tx) error {
		ts, err := tx.ListTokens(userID)
		for _, t := range ts {
			out = append(out, s.viewToken(t))
		}
		return err
	})
	return out, err
}

// GetToken returns one of the caller's tokens.
func (s *Service) GetToken(ctx context.Context, p Principal, id string) (TokenView, error) {
	if err := s.requireAuth(p); err != nil {
		return TokenView{}, err
	}
	var out TokenView
	err := s.store.View(ctx, func(tx Tx) error {
		t, err := tx.GetToken(id)
		if err != nil {
			return err
		}
		if t.UserID != p.UserID {
			return notFound("token")
		}
		out = s.viewToken(t)
		return nil
	})
	return out, err
}

// GetTokenByName finds one of the caller's tokens by name.
func (s *Service) GetTokenByName(ctx context.Context, p Principal, name string) (TokenView, error) {
	if err := s.requireAuth(p); err != nil {
		return TokenView{}, err
	}
	var out TokenView
	err := s.store.View(ctx, func(tx Tx) error {
		t, err := tx.GetTokenByName(p.UserID, name)
		if err != nil {
			return withMessage(err, "token not found")
		}
		out = s.viewToken(t)
		return nil
	})
	return out, err
}

// UpdateToken renames, (de)activates, changes the expiry of, or lowers the write permission
// of one of the caller's tokens.
func (s *Service) UpdateToken(ctx context.Context, p Principal, id string, in TokenInput) (TokenView, error) {
	return s.updateToken(ctx, p, id, in, nativeForm)
}

func (s *Service) updateToken(ctx context.Context, p Principal, id string, in TokenInput, form tokenForm) (TokenView, error) {
	if err := s.requireSelfWrite(ctx, p, "token.update"); err != nil {
		return TokenView{}, err
	}
	at, set, err := s.tokenExpiry(in, form.expiryField)
	if err != nil {
		return TokenView{}, err
	}
	if set {
		if err := s.checkLifetime(p, at, form.expiryField); err != nil {
			return TokenView{}, err
		}
	}
	var out TokenView
	err = s.store.Update(ctx, func(tx Tx) error {
		t, err := tx.GetToken(id)
		if err != nil {
			return err
		}
		if t.UserID != p.UserID {
			return notFound("token")
		}
		if in.Name != nil {
			name := strings.TrimSpace(*in.Name)
			if err := validateTokenName(name); err != nil {
				return err
			}
			t.Name = name
		}
		if in.Active != nil {
			t.Active = *in.Active
		}
		if in.Write != nil {
			if *in.Write && !t.Write {
				return invalid("write", "write can only be lowered; create a new token for write access")
			}
			t.Write = *in.Write
		}
		if set {
			t.ExpiresAt = at
		}
		t.UpdatedAt = s.Now()
		if err := tx.PutToken(t); err != nil {
			return err
		}
		e := s.event(p, "token.update", ResultSuccess)
		e.TargetType, e.TargetID, e.UserID, e.Message = "token", t.ID, t.UserID, t.Name
		out = s.viewToken(t)
		return tx.AddEvent(&e)
	})
	if err == nil && in.Active != nil && !*in.Active {
		s.endSessions(ctx, p, tokenSessions(id), EndTokenRevoked)
	}
	return out, err
}

// RevokeToken deletes one of the caller's tokens (or, for admins with admin set, anyone's).
func (s *Service) RevokeToken(ctx context.Context, p Principal, id string, admin bool) error {
	if admin {
		if err := s.requireAdminWrite(ctx, p, "token.revoke"); err != nil {
			return err
		}
	} else if err := s.requireSelfWrite(ctx, p, "token.revoke"); err != nil {
		return err
	}
	err := s.store.Update(ctx, func(tx Tx) error {
		t, err := tx.GetToken(id)
		if err != nil {
			return err
		}
		if !admin && t.UserID != p.UserID {
			return notFound("token")
		}
		if err := tx.DeleteToken(id); err != nil {
			return err
		}
		e := s.event(p, "token.revoke", ResultSuccess)
		e.TargetType, e.TargetID, e.UserID, e.Message = "token", t.ID, t.UserID, t.Name
		return tx.AddEvent(&e)
	})
	if err == nil {
		s.endSessions(ctx, p, tokenSessions(id), EndTokenRevoked)
	}
	return err
}

// RegenerateToken gives one of the caller's tokens a new value with the same settings; the
// old value stops working at once.
func (s *Service) RegenerateToken(ctx context.Context, p Principal, id string) (CreatedToken, error) {
	if err := s.requireSelfWrite(ctx, p, "token.regenerate"); err != nil {
		return CreatedToken{}, err
	}
	value := NewTokenValue()
	var out CreatedToken
	err := s.store.Update(ctx, func(tx Tx) error {
		t, err := tx.GetToken(id)
		if err != nil {
			return err
		}
		if t.UserID != p.UserID {
			return notFound("token")
		}
		if p.Method == "token" && t.Write && !p.TokenWrite {
			return &Error{Kind: KindForbidden, Code: CodeInsufficientScope, Message: "a read-only token cannot regenerate a write token"}
		}
		// A new value is a new credential: a token may not mint one that outlives itself.
		if p.Method == "token" && p.TokenID != "" && p.TokenID != t.ID {
			if parent, err := tx.GetToken(p.TokenID); err == nil && parent.ExpiresAt != nil &&
				(t.ExpiresAt == nil || t.ExpiresAt.After(*parent.ExpiresAt)) {
				return &Error{Kind: KindForbidden, Code: CodeInsufficientScope, Message: "a token cannot regenerate a token that outlives itself"}
			}
		}
		t.Hash, t.Hint, t.UpdatedAt = s.hashToken(value), "…"+value[len(value)-4:], s.Now()
		if err := tx.PutToken(t); err != nil {
			return err
		}
		e := s.event(p, "token.regenerate", ResultSuccess)
		e.TargetType, e.TargetID, e.UserID, e.Message = "token", t.ID, t.UserID, t.Name
		out = CreatedToken{TokenView: s.viewToken(t), Token: value}
		return tx.AddEvent(&e)
	})
	if err == nil {
		s.endSessions(ctx, p, tokenSessions(id), EndTokenRevoked)
	}
	return out, err
}

// authenticateToken verifies an access token: a format check, one indexed lookup of its
// HMAC and a constant-time compare. A use is counted in memory under route (usage audit);
// nothing is written here.
func (s *Service) authenticateToken(ctx context.Context, ip, route, value string) (Principal, error) {
	if !WellFormedToken(value) {
		return Principal{}, errUnauthenticated()
	}
	h := s.hashToken(value)
	var t AccessToken
	var u User
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		t, err = tx.GetTokenByHash(h)
		if err != nil {
			return err
		}
		u, err = tx.GetUser(t.UserID)
		return err
	})
	if err != nil {
		if isNotFound(err) {
			return Principal{}, errUnauthenticated()
		}
		return Principal{}, err
	}
	if subtle.ConstantTimeCompare([]byte(t.Hash), []byte(h)) != 1 || !t.Active ||
		(t.ExpiresAt != nil && !s.Now().Before(*t.ExpiresAt)) || !s.userMayLogin(u) {
		return Principal{}, errUnauthenticated()
	}
	p := Principal{UserID: u.ID, Username: u.Username, Role: u.Role, Method: "token", TokenID: t.ID,
		TokenName: t.Name, TokenWrite: t.Write && u.Role != RoleViewer, SourceIP: ip}
	if t.ExpiresAt != nil {
		p.TokenExpiresAt = *t.ExpiresAt
	}
	s.noteTokenUse(p, route)
	return p, nil
}
