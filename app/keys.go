package app

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"
)

// Longest SSH key name and public key line, in characters.
const (
	maxKeyName   = 100
	maxPublicKey = 16384
)

// AddKeyInput is the body of an SSH key addition.
type AddKeyInput struct {
	PublicKey string `json:"public_key"`
	Name      string `json:"name"`
}

// GeneratedKey is a new key pair; the private half is shown once and never stored.
type GeneratedKey struct {
	Key        SSHKey `json:"key"`
	PrivateKey string `json:"private_key"`
}

// ParsePublicKey validates an OpenSSH authorized_keys line.
func ParsePublicKey(line string) (ssh.PublicKey, string, error) {
	line = strings.TrimSpace(line)
	if line == "" {
		return nil, "", invalid("public_key", "public_key is required")
	}
	if utf8.RuneCountInString(line) > maxPublicKey {
		return nil, "", invalid("public_key", "public_key must be at most %d characters", maxPublicKey)
	}
	pk, comment, _, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil || len(strings.TrimSpace(string(rest))) > 0 {
		return nil, "", invalid("public_key", "public_key is not a valid OpenSSH public key")
	}
	switch pk.Type() {
	case ssh.KeyAlgoRSA:
		if cp, ok := pk.(ssh.CryptoPublicKey); ok {
			if rk, ok := cp.CryptoPublicKey().(interface{ Size() int }); ok && rk.Size()*8 < 2048 {
				return nil, "", invalid("public_key", "RSA keys must be at least 2048 bits")
			}
		}
	//lint:ignore SA1019 the deprecated constant names the key type refused here
	case ssh.KeyAlgoDSA:
		return nil, "", invalid("public_key", "DSA keys are not accepted")
	}
	return pk, comment, nil
}

func (s *Service) keyOwnerAction(ctx context.Context, p Principal, userID, action string) error {
	if p.UserID == userID {
		return s.requireSelfWrite(ctx, p, action)
	}
	return s.requireAdminWrite(ctx, p, action)
}

func (s *Service) keyOwnerRead(p Principal, userID string) error {
	if err := s.requireAuth(p); err != nil {
		return err
	}
	if p.UserID == userID {
		return nil
	}
	return s.requireAdminRead(p)
}

// ListSSHKeys lists a user's keys (their own, or any for admins and viewers).
func (s *Service) ListSSHKeys(ctx context.Context, p Principal, userID string) ([]SSHKey, error) {
	if err := s.keyOwnerRead(p, userID); err != nil {
		return nil, err
	}
	var out []SSHKey
	err := s.store.View(ctx, func(tx Tx) error {
		if _, err := tx.GetUser(userID); err != nil {
			return err
		}
		var err error
		out, err = tx.ListSSHKeys(userID)
		return err
	})
	if out == nil {
		out = []SSHKey{}
	}
	return out, err
}

// AddSSHKey stores a public key for a user; a duplicate fingerprint is a conflict.
func (s *Service) AddSSHKey(ctx context.Context, p Principal, userID string, in AddKeyInput) (SSHKey, error) {
	if err := s.keyOwnerAction(ctx, p, userID, "ssh_key.add"); err != nil {
		return SSHKey{}, err
	}
	pk, comment, err := ParsePublicKey(in.PublicKey)
	if err != nil {
		return SSHKey{}, err
	}
	name := strings.TrimSpace(in.Name)
	if err := validateText("name", name, 0, maxKeyName); err != nil {
		return SSHKey{}, err
	}
	if name == "" {
		// The key's comment names it; a comment is no reason to refuse a key, so it is
		// made to fit instead.
		name = sanitizeText(comment, maxKeyName)
	}
	source := "admin"
	if p.UserID == userID {
		source = "self"
	}
	return s.putKey(ctx, p, userID, pk, name, source)
}

func (s *Service) putKey(ctx context.Context, p Principal, userID string, pk ssh.PublicKey, name, source string) (SSHKey, error) {
	k := SSHKey{ID: newID(), UserID: userID, Name: name,
		PublicKey:   strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk))),
		Fingerprint: ssh.FingerprintSHA256(pk), Type: pk.Type(), Source: source, CreatedAt: s.Now()}
	err := s.store.Update(ctx, func(tx Tx) error {
		if _, err := tx.GetUser(userID); err != nil {
			return err
		}
		if err := tx.PutSSHKey(k); err != nil {
			return err
		}
		e := s.event(p, "ssh_key.add", ResultSuccess)
		e.TargetType, e.TargetID, e.UserID, e.Message = "ssh_key", k.ID, userID, k.Fingerprint
		return tx.AddEvent(&e)
	})
	return k, err
}

// GenerateSSHKey makes an ed25519 key pair, stores the public half and returns the private
// half once.
func (s *Service) GenerateSSHKey(ctx context.Context, p Principal, userID string) (GeneratedKey, error) {
	if err := s.keyOwnerAction(ctx, p, userID, "ssh_key.add"); err != nil {
		return GeneratedKey{}, err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return GeneratedKey{}, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "cloud-cli-proxy")
	if err != nil {
		return GeneratedKey{}, err
	}
	pk, err := ssh.NewPublicKey(pub)
	if err != nil {
		return GeneratedKey{}, err
	}
	k, err := s.putKey(ctx, p, userID, pk, "generated", "generated")
	if err != nil {
		return GeneratedKey{}, err
	}
	return GeneratedKey{Key: k, PrivateKey: string(pem.EncodeToMemory(block))}, nil
}

// DeleteSSHKey removes one of a user's keys.
func (s *Service) DeleteSSHKey(ctx context.Context, p Principal, userID, keyID string) error {
	if err := s.keyOwnerAction(ctx, p, userID, "ssh_key.delete"); err != nil {
		return err
	}
	var fp string
	err := s.store.Update(ctx, func(tx Tx) error {
		k, err := tx.GetSSHKey(keyID)
		if err != nil {
			return err
		}
		if k.UserID != userID {
			return notFound("ssh key")
		}
		if err := tx.DeleteSSHKey(keyID); err != nil {
			return err
		}
		fp = k.Fingerprint
		e := s.event(p, "ssh_key.delete", ResultSuccess)
		e.TargetType, e.TargetID, e.UserID, e.Message = "ssh_key", k.ID, userID, k.Fingerprint
		return tx.AddEvent(&e)
	})
	if err == nil {
		s.endSessions(ctx, p, keySessions(userID, fp), EndKeyDeleted)
	}
	return err
}

// The Admin* variants serve the administrator routes: they always require the admin role
// (read for viewers too), even when the target is the caller's own account, so an admin
// route never becomes a self-service route.

// AdminListSSHKeys lists any user's keys for admins and viewers.
func (s *Service) AdminListSSHKeys(ctx context.Context, p Principal, userID string) ([]SSHKey, error) {
	if err := s.requireAdminRead(p); err != nil {
		return nil, err
	}
	return s.ListSSHKeys(ctx, p, userID)
}

// AdminAddSSHKey adds a key to any user's account (admins).
func (s *Service) AdminAddSSHKey(ctx context.Context, p Principal, userID string, in AddKeyInput) (SSHKey, error) {
	if err := s.requireAdminWrite(ctx, p, "ssh_key.add"); err != nil {
		return SSHKey{}, err
	}
	return s.AddSSHKey(ctx, p, userID, in)
}

// AdminGenerateSSHKey generates a key pair for any user (admins).
func (s *Service) AdminGenerateSSHKey(ctx context.Context, p Principal, userID string) (GeneratedKey, error) {
	if err := s.requireAdminWrite(ctx, p, "ssh_key.add"); err != nil {
		return GeneratedKey{}, err
	}
	return s.GenerateSSHKey(ctx, p, userID)
}

// AdminDeleteSSHKey deletes any user's key (admins).
func (s *Service) AdminDeleteSSHKey(ctx context.Context, p Principal, userID, keyID string) error {
	if err := s.requireAdminWrite(ctx, p, "ssh_key.delete"); err != nil {
		return err
	}
	return s.DeleteSSHKey(ctx, p, userID, keyID)
}

// AdminGetTask returns any task to admins and viewers.
func (s *Service) AdminGetTask(ctx context.Context, p Principal, id string) (Task, error) {
	if err := s.requireAdminRead(p); err != nil {
		return Task{}, err
	}
	return s.GetTask(ctx, p, id)
}
