package app

import (
	"context"
	"errors"
	"regexp"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
)

// UserView is a user as clients see it.
type UserView struct {
	ID        string     `json:"id"`
	Username  string     `json:"username"`
	Role      Role       `json:"role"`
	Status    UserStatus `json:"status"`
	ExpiresAt *time.Time `json:"expires_at"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
}

func viewUser(u User) UserView {
	return UserView{ID: u.ID, Username: u.Username, Role: u.Role, Status: u.Status, ExpiresAt: u.ExpiresAt,
		CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt}
}

// CreateUserInput is the body of a user creation.
type CreateUserInput struct {
	Username  string     `json:"username"`
	Password  string     `json:"password"`
	ExpiresAt *time.Time `json:"expires_at"`
	Role      Role       `json:"role"`
}

var usernameRE = regexp.MustCompile(`^[a-z0-9._-]{3,50}$`)

// ValidateUsername checks a username's form.
func ValidateUsername(name string) error {
	if !usernameRE.MatchString(name) {
		return invalid("username", "username must be 3-50 characters of a-z, 0-9, '.', '_' or '-'")
	}
	return nil
}

// ValidatePassword checks a password's strength.
func ValidatePassword(field, pw string) error {
	if utf8.RuneCountInString(pw) < 8 {
		return invalid(field, "%s must be at least 8 characters", field)
	}
	if len(pw) > 72 {
		return invalid(field, "%s must be at most 72 bytes", field)
	}
	return nil
}

func validateRole(role Role) error {
	switch role {
	case RoleUser, RoleViewer, RoleAdmin:
		return nil
	}
	return invalid("role", "role must be user, viewer or admin")
}

// Validate checks the input and fills defaults.
func (in *CreateUserInput) Validate() error {
	if err := ValidateUsername(in.Username); err != nil {
		return err
	}
	if err := ValidatePassword("password", in.Password); err != nil {
		return err
	}
	if in.Role == "" {
		in.Role = RoleUser
	}
	return validateRole(in.Role)
}

func (s *Service) hashPassword(pw string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), s.cfg.BcryptCost)
	return string(h), err
}

// CreateUser adds an account.
func (s *Service) CreateUser(ctx context.Context, p Principal, in CreateUserInput) (UserView, error) {
	if err := s.requireAdminWrite(ctx, p, "user.create"); err != nil {
		return UserView{}, err
	}
	if err := in.Validate(); err != nil {
		return UserView{}, err
	}
	if in.ExpiresAt != nil && !in.ExpiresAt.After(s.Now()) {
		return UserView{}, invalid("expires_at", "expires_at must be in the future (omit it for an account that never expires)")
	}
	hash, err := s.hashPassword(in.Password)
	if err != nil {
		return UserView{}, err
	}
	now := s.Now()
	u := User{ID: newID(), Username: in.Username, Role: in.Role, Status: UserActive, CreatedAt: now, UpdatedAt: now,
		PasswordHash: hash, Version: 1}
	if in.ExpiresAt != nil {
		t := in.ExpiresAt.UTC()
		u.ExpiresAt = &t
	}
	err = s.store.Update(ctx, func(tx Tx) error {
		if err := tx.PutUser(u); err != nil {
			return err
		}
		e := s.event(p, "user.create", ResultSuccess)
		e.TargetType, e.TargetID, e.UserID = "user", u.ID, u.ID
		e.Message = u.Username
		return tx.AddEvent(&e)
	})
	if err != nil {
		return UserView{}, err
	}
	if u.ExpiresAt != nil {
		s.kickExpiry()
	}
	return viewUser(u), nil
}

// EnsureAdmin creates the named admin if no user of that name exists. It returns the
// password it set, or "" when the admin already existed.
func (s *Service) EnsureAdmin(ctx context.Context, username, password string) (string, error) {
	var exists bool
	err := s.store.View(ctx, func(tx Tx) error {
		_, err := tx.GetUserByName(username)
		if err == nil {
			exists = true
			return nil
		}
		if isNotFound(err) {
			return nil
		}
		return err
	})
	if err != nil || exists {
		return "", err
	}
	generated := password == ""
	if generated {
		password = randomPassword(20)
	}
	_, err = s.CreateUser(ctx, systemPrincipal(), CreateUserInput{Username: username, Password: password, Role: RoleAdmin})
	if err != nil {
		return "", err
	}
	return password, nil
}

// ListUsers lists every account.
func (s *Service) ListUsers(ctx context.Context, p Principal) ([]UserView, error) {
	if err := s.requireAdminRead(p); err != nil {
		return nil, err
	}
	var out []UserView
	err := s.store.View(ctx, func(tx Tx) error {
		us, err := tx.ListUsers()
		for _, u := range us {
			out = append(out, viewUser(u))
		}
		return err
	})
	if out == nil {
		out = []UserView{}
	}
	return out, err
}

// GetUser returns one account.
func (s *Service) GetUser(ctx context.Context, p Principal, id string) (UserView, error) {
	if err := s.requireAdminRead(p); err != nil {
		return UserView{}, err
	}
	var u User
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		u, err = tx.GetUser(id)
		return err
	})
	return viewUser(u), err
}

// PatchUserInput changes an account's status or role.
type PatchUserInput struct {
	Status *UserStatus `json:"status"`
	Role   *Role       `json:"role"`
}

// PatchUser enables, disables or changes the role of an account. Disabling kills its sessions.
func (s *Service) PatchUser(ctx context.Context, p Principal, id string, in PatchUserInput) (UserView, error) {
	if err := s.requireAdminWrite(ctx, p, "user.update"); err != nil {
		return UserView{}, err
	}
	if in.Status == nil && in.Role == nil {
		return UserView{}, invalid("status", "nothing to change: give status or role")
	}
	if in.Status != nil && *in.Status != UserActive && *in.Status != UserDisabled {
		return UserView{}, invalid("status", "status must be active or disabled")
	}
	if in.Role != nil {
		if err := validateRole(*in.Role); err != nil {
			return UserView{}, err
		}
	}
	if id == p.UserID && ((in.Status != nil && *in.Status != UserActive) || (in.Role != nil && *in.Role != RoleAdmin)) {
		return UserView{}, conflict(CodeSelfLockout, "you cannot disable or demote your own account")
	}
	var u User
	var disabled, roleChanged bool
	err := s.store.Update(ctx, func(tx Tx) error {
		var err error
		disabled, roleChanged = false, false
		u, err = tx.GetUser(id)
		if err != nil {
			return err
		}
		before := u
		if in.Status != nil && *in.Status != u.Status {
			u.Status = *in.Status
			u.Version++
			if u.Status == UserDisabled {
				disabled = true
				if err := s.revokeUserTokens(tx, p, u.ID, "account disabled"); err != nil {
					return err
				}
			}
		}
		if in.Role != nil && *in.Role != u.Role {
			u.Role = *in.Role
			u.Version++
			roleChanged = true
		}
		u.UpdatedAt = s.Now()
		if err := tx.PutUser(u); err != nil {
			return err
		}
		if err := s.keepAnAdmin(tx, before, &u); err != nil {
			return err
		}
		e := s.event(p, "user.update", ResultSuccess)
		e.TargetType, e.TargetID, e.UserID = "user", u.ID, u.ID
		e.Message = "status=" + u.Status.String() + " role=" + u.Role.String()
		return tx.AddEvent(&e)
	})
	if err == nil && disabled {
		s.endSessions(ctx, p, sessionsOfUser(u.ID), EndUserDisabled)
	} else if err == nil && roleChanged {
		s.endSessions(ctx, p, tuiSessionsOf(u.ID), EndRoleChanged)
	}
	if err == nil && u.ExpiresAt != nil {
		s.kickExpiry() // enabled again: its expiry is watched again
	}
	return viewUser(u), err
}

// DeleteUser removes an account with its hosts, keys, bindings and tokens in one transaction.
// The hosts' containers are removed by purge tasks queued in that same transaction.
func (s *Service) DeleteUser(ctx context.Context, p Principal, id string) error {
	if err := s.requireAdminWrite(ctx, p, "user.delete"); err != nil {
		return err
	}
	if id == p.UserID {
		return conflict(CodeSelfDelete, "you cannot delete your own account")
	}
	var purge []string
	err := s.store.Update(ctx, func(tx Tx) error {
		purge = purge[:0]
		u, err := tx.GetUser(id)
		if err != nil {
			return err
		}
		if err := s.keepAnAdmin(tx, u, nil); err != nil {
			return err
		}
		hosts, err := tx.ListHostsByUser(id)
		if err != nil {
			return err
		}
		for _, h := range hosts {
			if err := s.deleteHostRecords(tx, h.ID); err != nil {
				return err
			}
			t := s.newTask(systemPrincipal(), TaskHostPurge, h.ID, u.ID)
			if err := tx.PutTask(t); err != nil {
				return err
			}
			purge = append(purge, t.ID)
		}
		keys, err := tx.ListSSHKeys(id)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := tx.DeleteSSHKey(k.ID); err != nil {
				return err
			}
		}
		toks, err := tx.ListTokens(id)
		if err != nil {
			return err
		}
		for _, t := range toks {
			if err := tx.DeleteToken(t.ID); err != nil {
				return err
			}
		}
		if err := tx.DeleteUser(id); err != nil {
			return err
		}
		e := s.event(p, "user.delete", ResultSuccess)
		e.TargetType, e.TargetID, e.UserID = "user", u.ID, u.ID
		e.Message = u.Username
		return tx.AddEvent(&e)
	})
	if err != nil {
		return err
	}
	s.endSessions(ctx, p, sessionsOfUser(id), EndUserDeleted)
	s.enqueue(purge...)
	return nil
}

// deleteHostRecords removes a host and its binding inside tx.
func (s *Service) deleteHostRecords(tx Tx, hostID string) error {
	if b, err := tx.GetBindingByHost(hostID); err == nil {
		if err := tx.DeleteBinding(b.ID); err != nil {
			return err
		}
	} else if !isNotFound(err) {
		return err
	}
	return tx.DeleteHost(hostID)
}

// RotatePasswordResult carries a new password, shown once.
type RotatePasswordResult struct {
	UserID   string `json:"user_id"`
	Username string `json:"username"`
	Password string `json:"password"`
}

// RotatePassword sets a new random 20-character password and kills the user's sessions.
func (s *Service) RotatePassword(ctx context.Context, p Principal, id string) (RotatePasswordResult, error) {
	if err := s.requireAdminWrite(ctx, p, "user.rotate_password"); err != nil {
		return RotatePasswordResult{}, err
	}
	pw := randomPassword(20)
	hash, err := s.hashPassword(pw)
	if err != nil {
		return RotatePasswordResult{}, err
	}
	var u User
	err = s.store.Update(ctx, func(tx Tx) error {
		u, err = tx.GetUser(id)
		if err != nil {
			return err
		}
		u.PasswordHash = hash
		u.Version++
		u.UpdatedAt = s.Now()
		if err := tx.PutUser(u); err != nil {
			return err
		}
		if err := s.revokeUserTokens(tx, p, u.ID, "password rotated"); err != nil {
			return err
		}
		e := s.event(p, "user.rotate_password", ResultSuccess)
		e.TargetType, e.TargetID, e.UserID = "user", u.ID, u.ID
		return tx.AddEvent(&e)
	})
	if err != nil {
		return RotatePasswordResult{}, err
	}
	s.endSessions(ctx, p, either(passwordSessions(u.ID), userTokenSessions(u.ID)), EndPasswordChanged)
	return RotatePasswordResult{UserID: u.ID, Username: u.Username, Password: pw}, nil
}

// keepAnAdmin is the one rule that keeps the server administrable: a change of the user
// before into after (nil: deleted) is refused with 409 last_admin when before is an active
// administrator and no other would remain: none at all, or none without an expiry when
// before had none (an expiry on the last lasting administrator locks everyone out on that
// day). Disabling, demoting, expiring and deleting all pass through it, from every door,
// inside the change's own transaction, so two administrators disabling each other at once
// cannot both succeed.
func (s *Service) keepAnAdmin(tx Tx, before User, after *User) error {
	now := s.Now()
	active := func(u User) bool {
		return u.Role == RoleAdmin && u.Status == UserActive && (u.ExpiresAt == nil || now.Before(*u.ExpiresAt))
	}
	lasting := func(u User) bool { return active(u) && u.ExpiresAt == nil }
	loses := func(is func(User) bool) bool { return is(before) && (after == nil || !is(*after)) }
	losesActive, losesLasting := loses(active), loses(lasting)
	if !losesActive && !losesLasting {
		return nil
	}
	us, err := tx.ListUsers()
	if err != nil {
		return err
	}
	others, othersLasting := 0, 0
	for _, u := range us {
		if u.ID == before.ID {
			continue
		}
		if active(u) {
			others++
		}
		if lasting(u) {
			othersLasting++
		}
	}
	switch {
	case losesActive && others == 0:
		return conflict(CodeLastAdmin, "%q is the last active administrator: it cannot be disabled, demoted, given an expiry or deleted until another active administrator exists", before.Username)
	case losesLasting && othersLasting == 0:
		return conflict(CodeLastAdmin, "%q is the last active administrator without an expiry: it cannot be disabled, demoted, given an expiry or deleted until another active administrator without an expiry exists", before.Username)
	}
	return nil
}

// ExpiryInput is the body of PUT …/users/{id}/expiry. expires_at is required: a time, or
// null to clear the expiry; a body without it is refused rather than read as "never".
type ExpiryInput struct {
	ExpiresAt OptionalTime `json:"expires_at"`
}

// SetUserExpiry is SetExpiry for a request body: an absent expires_at is a 422.
func (s *Service) SetUserExpiry(ctx context.Context, p Principal, id string, in ExpiryInput) (UserView, error) {
	if err := s.requireAdminWrite(ctx, p, "user.set_expiry"); err != nil {
		return UserView{}, err
	}
	if !in.ExpiresAt.Set {
		return UserView{}, invalid("expires_at", `expires_at is required: a time such as "2026-12-31T23:59:59Z", or null to clear the expiry`)
	}
	return s.SetExpiry(ctx, p, id, in.ExpiresAt.Time)
}

// SetExpiry sets or clears (nil) the date an account stops working.
func (s *Service) SetExpiry(ctx context.Context, p Principal, id string, at *time.Time) (UserView, error) {
	if err := s.requireAdminWrite(ctx, p, "user.set_expiry"); err != nil {
		return UserView{}, err
	}
	var u User
	err := s.store.Update(ctx, func(tx Tx) error {
		var err error
		u, err = tx.GetUser(id)
		if err != nil {
			return err
		}
		before := u
		if at != nil {
			t := at.UTC()
			u.ExpiresAt = &t
		} else {
			u.ExpiresAt = nil
		}
		if u.Status == UserExpired && (u.ExpiresAt == nil || s.Now().Before(*u.ExpiresAt)) {
			u.Status = UserActive
		}
		u.UpdatedAt = s.Now()
		if err := tx.PutUser(u); err != nil {
			return err
		}
		if err := s.keepAnAdmin(tx, before, &u); err != nil {
			return err
		}
		e := s.event(p, "user.set_expiry", ResultSuccess)
		e.TargetType, e.TargetID, e.UserID = "user", u.ID, u.ID
		if u.ExpiresAt != nil {
			e.Message = u.ExpiresAt.Format(time.RFC3339)
		} else {
			e.Message = "never"
		}
		return tx.AddEvent(&e)
	})
	if err == nil && u.ExpiresAt != nil && !s.Now().Before(*u.ExpiresAt) {
		s.endSessions(ctx, p, sessionsOfUser(u.ID), EndUserExpired)
	} else if err == nil {
		s.kickExpiry()
	}
	return viewUser(u), err
}

// ChangePasswordInput is the body of a self-service password change.
type ChangePasswordInput struct {
	OldPassword string `json:"old_password"`
	NewPassword string `json:"new_password"`
}

// ChangePassword changes the caller's own password; the old one is required. Other sessions
// die; the caller gets a fresh JWT when they used one.
func (s *Service) ChangePassword(ctx context.Context, p Principal, in ChangePasswordInput) (*LoginResult, error) {
	if err := s.requireSelfWrite(ctx, p, "user.change_password"); err != nil {
		return nil, err
	}
	if err := ValidatePassword("new_password", in.NewPassword); err != nil {
		return nil, err
	}
	var u User
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		u, err = tx.GetUser(p.UserID)
		return err
	})
	if err != nil {
		return nil, err
	}
	if bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(in.OldPassword)) != nil {
		e := s.event(p, "user.change_password", ResultFailure)
		e.UserID, e.Message = u.ID, "old password did not match"
		s.record(ctx, e)
		return nil, invalid("old_password", "old password is incorrect")
	}
	hash, err := s.hashPassword(in.NewPassword)
	if err != nil {
		return nil, err
	}
	err = s.store.Update(ctx, func(tx Tx) error {
		u, err = tx.GetUser(p.UserID)
		if err != nil {
			return err
		}
		u.PasswordHash = hash
		u.Version++
		u.UpdatedAt = s.Now()
		if err := tx.PutUser(u); err != nil {
			return err
		}
		if err := s.revokeUserTokens(tx, p, u.ID, "password changed"); err != nil {
			return err
		}
		e := s.event(p, "user.change_password", ResultSuccess)
		e.TargetType, e.TargetID, e.UserID = "user", u.ID, u.ID
		return tx.AddEvent(&e)
	})
	if err != nil {
		return nil, err
	}
	s.endSessions(ctx, p, either(passwordSessions(u.ID), userTokenSessions(u.ID)), EndPasswordChanged)
	if p.Method != "jwt" {
		return nil, nil
	}
	tok, _, err := s.issueJWT(u)
	if err != nil {
		return nil, err
	}
	return &LoginResult{Token: tok, Role: u.Role, ExpiresIn: int64(s.cfg.JWTTTL / time.Second), UserID: u.ID, Username: u.Username}, nil
}

func isNotFound(err error) bool { return err != nil && errors.Is(err, ErrNotFound) }
