package app

import (
	"context"
	"encoding/json"
	"strings"
	"time"
)

// CompatTokenInput is the body of the name-addressed token routes (/_/token): tokens are
// named by name, expiration_date is a time in milliseconds since the epoch (the token stops
// at 00:00 UTC of that UTC day) and a new token may be inactive. Errors name the fields as
// this body calls them.
type CompatTokenInput struct {
	Name           *string `json:"name"`
	ExpirationDate *int64  `json:"expiration_date"`
	Active         *bool   `json:"active"`
	Write          *bool   `json:"write"`
}

// compatForm is how the /_/token body speaks of a token.
var compatForm = tokenForm{expiryField: "expiration_date", inactiveNewOK: true}

// tokenInput is the native input the body stands for.
func (c CompatTokenInput) tokenInput() TokenInput {
	in := TokenInput{Name: c.Name, Active: c.Active, Write: c.Write}
	if c.ExpirationDate != nil {
		d := time.UnixMilli(*c.ExpirationDate).UTC().Format(time.DateOnly)
		in.ExpiresAt, _ = json.Marshal(d)
	}
	return in
}

// name is the token the body names; it is required.
func (c CompatTokenInput) name() (string, error) {
	name := ""
	if c.Name != nil {
		name = strings.TrimSpace(*c.Name)
	}
	return name, validateTokenName(name)
}

// CreateCompatToken makes a token from the /_/token body, active or not, in one transaction.
func (s *Service) CreateCompatToken(ctx context.Context, p Principal, c CompatTokenInput) (CreatedToken, error) {
	return s.createToken(ctx, p, c.tokenInput(), compatForm)
}

// UpdateCompatToken changes the caller's token named by the /_/token body.
func (s *Service) UpdateCompatToken(ctx context.Context, p Principal, c CompatTokenInput) (TokenView, error) {
	if err := s.requireSelfWrite(ctx, p, "token.update"); err != nil {
		return TokenView{}, err
	}
	name, err := c.name()
	if err != nil {
		return TokenView{}, err
	}
	t, err := s.GetTokenByName(ctx, p, name)
	if err != nil {
		return TokenView{}, err
	}
	in := c.tokenInput()
	in.Name = nil
	return s.updateToken(ctx, p, t.ID, in, compatForm)
}

// RevokeCompatToken deletes the caller's token named by the /_/token body.
func (s *Service) RevokeCompatToken(ctx context.Context, p Principal, c CompatTokenInput) error {
	if err := s.requireSelfWrite(ctx, p, "token.revoke"); err != nil {
		return err
	}
	name, err := c.name()
	if err != nil {
		return err
	}
	t, err := s.GetTokenByName(ctx, p, name)
	if err != nil {
		return err
	}
	return s.RevokeToken(ctx, p, t.ID, false)
}
