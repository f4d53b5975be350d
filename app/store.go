package app

import (
	"context"
	"time"
)

// Store is the persistence the service needs. Every change that touches several records is
// made inside one Update call, so it lands whole or not at all. Get* methods return an error
// matching ErrNotFound when the record does not exist; Put* methods return one matching
// ErrConflict when a unique index would be violated.
type Store interface {
	View(ctx context.Context, fn func(Tx) error) error
	Update(ctx context.Context, fn func(Tx) error) error
	// Check reports whether the database is usable.
	Check(ctx context.Context) error
	Close() error
}

// Generational is implemented by a Store that counts its writes. Generation changes after
// every Update returns and never goes back, so a value read before a View names a state at
// least that new; the service keys caches of derived views on it. Stores without it are
// simply not cached.
type Generational interface {
	Generation() uint64
}

// Tx is one transaction, made of small per-entity stores.
type Tx interface {
	UserStore
	SSHKeyStore
	EgressStore
	HostStore
	BindingStore
	TaskStore
	EventStore
	TokenStore
	RevocationStore
}

// UserStore keeps users, unique by username.
type UserStore interface {
	GetUser(id string) (User, error)
	GetUserByName(username string) (User, error)
	PutUser(u User) error
	DeleteUser(id string) error
	ListUsers() ([]User, error)
}

// SSHKeyStore keeps public keys, unique by fingerprint per user.
type SSHKeyStore interface {
	GetSSHKey(id string) (SSHKey, error)
	PutSSHKey(k SSHKey) error
	DeleteSSHKey(id string) error
	ListSSHKeys(userID string) ([]SSHKey, error)
}

// EgressStore keeps egress IPs.
type EgressStore interface {
	GetEgress(id string) (EgressIP, error)
	PutEgress(e EgressIP) error
	DeleteEgress(id string) error
	ListEgress() ([]EgressIP, error)
}

// HostStore keeps hosts, unique by short id, indexed by user.
type HostStore interface {
	GetHost(id string) (Host, error)
	GetHostByShortID(shortID string) (Host, error)
	PutHost(h Host) error
	DeleteHost(id string) error
	ListHosts() ([]Host, error)
	ListHostsByUser(userID string) ([]Host, error)
}

// BindingStore keeps bindings, unique by host, indexed by egress IP.
type BindingStore interface {
	GetBinding(id string) (Binding, error)
	GetBindingByHost(hostID string) (Binding, error)
	PutBinding(b Binding) error
	DeleteBinding(id string) error
	ListBindings() ([]Binding, error)
	ListBindingsByEgress(egressID string) ([]Binding, error)
}

// TaskStore keeps tasks.
type TaskStore interface {
	GetTask(id string) (Task, error)
	PutTask(t Task) error
	// ListTasks returns tasks newest first, at most limit (0: all), optionally for one host.
	ListTasks(hostID string, limit int) ([]Task, error)
	// ListTasksByState returns the tasks in one of the given states, oldest first.
	ListTasksByState(states ...TaskState) ([]Task, error)
	// PurgeTasksBefore deletes up to max finished tasks (<= 0: all) that finished before
	// before; queued and running tasks stay.
	PurgeTasksBefore(before time.Time, max int) (int, error)
}

// EventStore keeps the audit log, indexed by time, user, host and type.
type EventStore interface {
	AddEvent(e *Event) error // assigns e.ID
	QueryEvents(q EventQuery) (EventPage, error)
	// EventsAfter returns, in the order they were written, the events written after the
	// event whose id is after that match q's user, host and type (q's other fields are
	// ignored), at most max; more is true when there were more. Events stamped up to slack
	// before the cursor's event but written after it are found too (the change feed's
	// resumption). An id the store did not hand out is a bad request (invalid_cursor).
	EventsAfter(after string, q EventQuery, slack time.Duration, max int) (events []Event, more bool, err error)
	CountEventsSince(t time.Time) (int, error)
	// PurgeEventsBefore deletes up to max events (<= 0: all) older than before, oldest
	// first, and returns how many it deleted.
	PurgeEventsBefore(before time.Time, max int) (int, error)
}

// TokenStore keeps access tokens, unique by hash and by name per user.
type TokenStore interface {
	GetToken(id string) (AccessToken, error)
	GetTokenByHash(hash string) (AccessToken, error)
	GetTokenByName(userID, name string) (AccessToken, error)
	PutToken(t AccessToken) error
	DeleteToken(id string) error
	ListTokens(userID string) ([]AccessToken, error) // userID "" lists all
}

// RevocationStore remembers JWT ids that were logged out before they expired.
type RevocationStore interface {
	RevokeJWT(jti string, expires time.Time) error
	IsJWTRevoked(jti string) (bool, error)
	PurgeRevocations(before time.Time) error
}
