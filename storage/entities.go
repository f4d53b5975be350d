package storage

import (
	"bytes"
	"encoding/binary"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// Users.

func (t *tx) GetUser(id string) (app.User, error) {
	return getRecord[app.User](t.bucket(bUsers), id, "user")
}

func (t *tx) GetUserByName(username string) (app.User, error) {
	return byUnique[app.User](t, bUsersByName, bUsers, single(username), "user")
}

func (t *tx) PutUser(u app.User) error {
	if err := requireID("user", u.ID); err != nil {
		return err
	}
	recs, byName := t.bucket(bUsers), t.bucket(bUsersByName)
	old, exists, err := getOld[app.User](recs, u.ID, "user")
	if err != nil {
		return err
	}
	if err := checkUnique(byName, single(u.Username), u.ID, app.CodeDuplicateUsername, "username already taken"); err != nil {
		return err
	}
	var oldKey []byte
	if exists {
		oldKey = single(old.Username)
	}
	if err := reindex(byName, oldKey, single(u.Username), []byte(u.ID)); err != nil {
		return err
	}
	return putRecord(recs, u.ID, u)
}

func (t *tx) DeleteUser(id string) error {
	recs := t.bucket(bUsers)
	old, err := getRecord[app.User](recs, id, "user")
	if err != nil {
		return err
	}
	if err := unindex(t.bucket(bUsersByName), single(old.Username)); err != nil {
		return err
	}
	return recs.Delete([]byte(id))
}

func (t *tx) ListUsers() ([]app.User, error) {
	out, err := listAll[app.User](t.bucket(bUsers), "user")
	sortByCreated(out, func(u app.User) time.Time { return u.CreatedAt }, func(u app.User) string { return u.ID })
	return out, err
}

// SSH keys.

func (t *tx) GetSSHKey(id string) (app.SSHKey, error) {
	return getRecord[app.SSHKey](t.bucket(bSSHKeys), id, "ssh key")
}

func (t *tx) PutSSHKey(k app.SSHKey) error {
	if err := requireID("ssh key", k.ID); err != nil {
		return err
	}
	recs, byUser, byFP := t.bucket(bSSHKeys), t.bucket(bSSHKeysByUser), t.bucket(bSSHKeysByFP)
	old, exists, err := getOld[app.SSHKey](recs, k.ID, "ssh key")
	if err != nil {
		return err
	}
	newFP := pair(k.UserID, k.Fingerprint)
	if err := checkUnique(byFP, newFP, k.ID, app.CodeDuplicateKey, "this key is already registered for the user"); err != nil {
		return err
	}
	var oldUser, oldFP []byte
	if exists {
		oldUser, oldFP = pair(old.UserID, old.ID), pair(old.UserID, old.Fingerprint)
	}
	if err := reindex(byFP, oldFP, newFP, []byte(k.ID)); err != nil {
		return err
	}
	if err := reindex(byUser, oldUser, pair(k.UserID, k.ID), empty); err != nil {
		return err
	}
	return putRecord(recs, k.ID, k)
}

func (t *tx) DeleteSSHKey(id string) error {
	recs := t.bucket(bSSHKeys)
	old, err := getRecord[app.SSHKey](recs, id, "ssh key")
	if err != nil {
		return err
	}
	if err := unindex(t.bucket(bSSHKeysByFP), pair(old.UserID, old.Fingerprint)); err != nil {
		return err
	}
	if err := unindex(t.bucket(bSSHKeysByUser), pair(old.UserID, old.ID)); err != nil {
		return err
	}
	return recs.Delete([]byte(id))
}

// ListSSHKeys lists one user's keys, or every key when userID is "".
func (t *tx) ListSSHKeys(userID string) ([]app.SSHKey, error) {
	var out []app.SSHKey
	var err error
	if userID == "" {
		out, err = listAll[app.SSHKey](t.bucket(bSSHKeys), "ssh key")
	} else {
		out, err = listByPrefix[app.SSHKey](t.bucket(bSSHKeysByUser), t.bucket(bSSHKeys), prefix(userID), "ssh key")
	}
	sortByCreated(out, func(k app.SSHKey) time.Time { return k.CreatedAt }, func(k app.SSHKey) string { return k.ID })
	return out, err
}

// Egress IPs.

func (t *tx) GetEgress(id string) (app.EgressIP, error) {
	return getRecord[app.EgressIP](t.bucket(bEgress), id, "egress ip")
}

func (t *tx) PutEgress(e app.EgressIP) error {
	if err := requireID("egress ip", e.ID); err != nil {
		return err
	}
	return putRecord(t.bucket(bEgress), e.ID, e)
}

func (t *tx) DeleteEgress(id string) error {
	recs := t.bucket(bEgress)
	if _, err := getRecord[app.EgressIP](recs, id, "egress ip"); err != nil {
		return err
	}
	return recs.Delete([]byte(id))
}

func (t *tx) ListEgress() ([]app.EgressIP, error) {
	out, err := listAll[app.EgressIP](t.bucket(bEgress), "egress ip")
	sortByCreated(out, func(e app.EgressIP) time.Time { return e.CreatedAt }, func(e app.EgressIP) string { return e.ID })
	return out, err
}

// Hosts.

func (t *tx) GetHost(id string) (app.Host, error) {
	return getRecord[app.Host](t.bucket(bHosts), id, "host")
}

func (t *tx) GetHostByShortID(shortID string) (app.Host, error) {
	return byUnique[app.Host](t, bHostsByShortID, bHosts, single(shortID), "host")
}

func (t *tx) PutHost(h app.Host) error {
	if err := requireID("host", h.ID); err != nil {
		return err
	}
	recs, byShort, byUser := t.bucket(bHosts), t.bucket(bHostsByShortID), t.bucket(bHostsByUser)
	old, exists, err := getOld[app.Host](recs, h.ID, "host")
	if err != nil {
		return err
	}
	if err := checkUnique(byShort, single(h.ShortID), h.ID, app.CodeDuplicateShortID, "short id already in use"); err != nil {
		return err
	}
	var oldShort, oldUser []byte
	if exists {
		oldShort, oldUser = single(old.ShortID), pair(old.UserID, old.ID)
	}
	if err := reindex(byShort, oldShort, single(h.ShortID), []byte(h.ID)); err != nil {
		return err
	}
	if err := reindex(byUser, oldUser, pair(h.UserID, h.ID), empty); err != nil {
		return err
	}
	return putRecord(recs, h.ID, h)
}

func (t *tx) DeleteHost(id string) error {
	recs := t.bucket(bHosts)
	old, err := getRecord[app.Host](recs, id, "host")
	if err != nil {
		return err
	}
	if err := unindex(t.bucket(bHostsByShortID), single(old.ShortID)); err != nil {
		return err
	}
	if err := unindex(t.bucket(bHostsByUser), pair(old.UserID, old.ID)); err != nil {
		return err
	}
	return recs.Delete([]byte(id))
}

func (t *tx) ListHosts() ([]app.Host, error) {
	out, err := listAll[app.Host](t.bucket(bHosts), "host")
	sortByCreated(out, func(h app.Host) time.Time { return h.CreatedAt }, func(h app.Host) string { return h.ID })
	return out, err
}

func (t *tx) ListHostsByUser(userID string) ([]app.Host, error) {
	if userID == "" {
		return []app.Host{}, nil
	}
	out, err := listByPrefix[app.Host](t.bucket(bHostsByUser), t.bucket(bHosts), prefix(userID), "host")
	sortByCreated(out, func(h app.Host) time.Time { return h.CreatedAt }, func(h app.Host) string { return h.ID })
	return out, err
}

// Bindings.

func (t *tx) GetBinding(id string) (app.Binding, error) {
	return getRecord[app.Binding](t.bucket(bBindings), id, "binding")
}

func (t *tx) GetBindingByHost(hostID string) (app.Binding, error) {
	return byUnique[app.Binding](t, bBindingsByHost, bBindings, single(hostID), "binding")
}

func (t *tx) PutBinding(b app.Binding) error {
	if err := requireID("binding", b.ID); err != nil {
		return err
	}
	recs, byHost, byEgress := t.bucket(bBindings), t.bucket(bBindingsByHost), t.bucket(bBindingsByEgress)
	old, exists, err := getOld[app.Binding](recs, b.ID, "binding")
	if err != nil {
		return err
	}
	if err := checkUnique(byHost, single(b.HostID), b.ID, app.CodeHostAlreadyBound, "host already has an egress binding"); err != nil {
		return err
	}
	var oldHost, oldEgress []byte
	if exists {
		oldHost, oldEgress = single(old.HostID), pair(old.EgressIPID, old.ID)
	}
	if err := reindex(byHost, oldHost, single(b.HostID), []byte(b.ID)); err != nil {
		return err
	}
	if err := reindex(byEgress, oldEgress, pair(b.EgressIPID, b.ID), empty); err != nil {
		return err
	}
	return putRecord(recs, b.ID, b)
}

func (t *tx) DeleteBinding(id string) error {
	recs := t.bucket(bBindings)
	old, err := getRecord[app.Binding](recs, id, "binding")
	if err != nil {
		return err
	}
	if err := unindex(t.bucket(bBindingsByHost), single(old.HostID)); err != nil {
		return err
	}
	if err := unindex(t.bucket(bBindingsByEgress), pair(old.EgressIPID, old.ID)); err != nil {
		return err
	}
	return recs.Delete([]byte(id))
}

func (t *tx) ListBindings() ([]app.Binding, error) {
	out, err := listAll[app.Binding](t.bucket(bBindings), "binding")
	sortByCreated(out, func(b app.Binding) time.Time { return b.CreatedAt }, func(b app.Binding) string { return b.ID })
	return out, err
}

func (t *tx) ListBindingsByEgress(egressID string) ([]app.Binding, error) {
	if egressID == "" {
		return []app.Binding{}, nil
	}
	out, err := listByPrefix[app.Binding](t.bucket(bBindingsByEgress), t.bucket(bBindings), prefix(egressID), "binding")
	sortByCreated(out, func(b app.Binding) time.Time { return b.CreatedAt }, func(b app.Binding) string { return b.ID })
	return out, err
}

// Access tokens.

func (t *tx) GetToken(id string) (app.AccessToken, error) {
	return getRecord[app.AccessToken](t.bucket(bTokens), id, "token")
}

func (t *tx) GetTokenByHash(hash string) (app.AccessToken, error) {
	return byUnique[app.AccessToken](t, bTokensByHash, bTokens, single(hash), "token")
}

func (t *tx) GetTokenByName(userID, name string) (app.AccessToken, error) {
	return byUnique[app.AccessToken](t, bTokensByName, bTokens, pair(userID, name), "token")
}

func (t *tx) PutToken(tok app.AccessToken) error {
	if err := requireID("token", tok.ID); err != nil {
		return err
	}
	recs := t.bucket(bTokens)
	byHash, byName, byUser := t.bucket(bTokensByHash), t.bucket(bTokensByName), t.bucket(bTokensByUser)
	old, exists, err := getOld[app.AccessToken](recs, tok.ID, "token")
	if err != nil {
		return err
	}
	newHash, newName := single(tok.Hash), pair(tok.UserID, tok.Name)
	if err := checkUnique(byHash, newHash, tok.ID, app.CodeDuplicateTokenHash, "token hash already in use"); err != nil {
		return err
	}
	if err := checkUnique(byName, newName, tok.ID, app.CodeDuplicateTokenName, "a token with this name already exists"); err != nil {
		return err
	}
	var oldHash, oldName, oldUser []byte
	if exists {
		oldHash, oldName, oldUser = single(old.Hash), pair(old.UserID, old.Name), pair(old.UserID, old.ID)
	}
	if err := reindex(byHash, oldHash, newHash, []byte(tok.ID)); err != nil {
		return err
	}
	if err := reindex(byName, oldName, newName, []byte(tok.ID)); err != nil {
		return err
	}
	if err := reindex(byUser, oldUser, pair(tok.UserID, tok.ID), empty); err != nil {
		return err
	}
	return putRecord(recs, tok.ID, tok)
}

func (t *tx) DeleteToken(id string) error {
	recs := t.bucket(bTokens)
	old, err := getRecord[app.AccessToken](recs, id, "token")
	if err != nil {
		return err
	}
	if err := unindex(t.bucket(bTokensByHash), single(old.Hash)); err != nil {
		return err
	}
	if err := unindex(t.bucket(bTokensByName), pair(old.UserID, old.Name)); err != nil {
		return err
	}
	if err := unindex(t.bucket(bTokensByUser), pair(old.UserID, old.ID)); err != nil {
		return err
	}
	return recs.Delete([]byte(id))
}

// ListTokens lists one user's tokens, or every token when userID is "".
func (t *tx) ListTokens(userID string) ([]app.AccessToken, error) {
	var out []app.AccessToken
	var err error
	if userID == "" {
		out, err = listAll[app.AccessToken](t.bucket(bTokens), "token")
	} else {
		out, err = listByPrefix[app.AccessToken](t.bucket(bTokensByUser), t.bucket(bTokens), prefix(userID), "token")
	}
	sortByCreated(out, func(k app.AccessToken) time.Time { return k.CreatedAt }, func(k app.AccessToken) string { return k.ID })
	return out, err
}

// JWT revocations.

func (t *tx) RevokeJWT(jti string, expires time.Time) error {
	if jti == "" {
		return &app.Error{Kind: app.KindInvalid, Code: app.CodeInvalidID, Field: "jti", Message: "jti is required"}
	}
	recs, byExp := t.bucket(bRevocations), t.bucket(bRevocationsByExpiry)
	exp := u64(timeKey(expires))
	if old := recs.Get([]byte(jti)); len(old) == 8 {
		if err := byExp.Delete(join(old, []byte(jti))); err != nil {
			return err
		}
	}
	if err := byExp.Put(join(exp, []byte(jti)), empty); err != nil {
		return err
	}
	return recs.Put([]byte(jti), exp)
}

func (t *tx) IsJWTRevoked(jti string) (bool, error) {
	if jti == "" {
		return false, nil
	}
	return t.bucket(bRevocations).Get([]byte(jti)) != nil, nil
}

// PurgeRevocations forgets revocations whose token expired before the given time; such
// tokens are refused on their expiry anyway.
func (t *tx) PurgeRevocations(before time.Time) error {
	recs, byExp := t.bucket(bRevocations), t.bucket(bRevocationsByExpiry)
	limit := timeKey(before)
	var gone [][]byte
	c := byExp.Cursor()
	for k, _ := c.First(); len(k) >= 8 && binary.BigEndian.Uint64(k[:8]) < limit; k, _ = c.Next() {
		gone = append(gone, bytes.Clone(k))
	}
	for _, k := range gone {
		jti := k[8:]
		if cur := recs.Get(jti); cur != nil && string(cur) == string(k[:8]) {
			if err := recs.Delete(jti); err != nil {
				return err
			}
		}
		if err := byExp.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
