package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// DefaultTimeout is how long Open waits for the file lock held by another process.
const DefaultTimeout = time.Second

// fileMode is the mode of the database file and of backups: it holds password hashes and
// tunnel private keys.
const fileMode os.FileMode = 0o600

var (
	// ErrLocked is returned by Open when another process holds the database file.
	ErrLocked = errors.New("storage: database file is locked by another process")
	// ErrSchemaTooNew is returned by Open when the file was written by a newer program.
	ErrSchemaTooNew = errors.New("storage: database schema is newer than this program supports")
)

// Options tunes Open. The zero value is fine.
type Options struct {
	// Timeout is how long to wait for the file lock; 0 means DefaultTimeout.
	Timeout time.Duration
	// MaxBatchDelay bounds how long Update waits to share a commit (and its fsync) with
	// concurrent writers; 0 keeps bbolt's default (10ms).
	MaxBatchDelay time.Duration
	// MaxBatchSize bounds how many Update calls share one commit; 0 keeps bbolt's default.
	MaxBatchSize int
	// InitialMmapSize pre-sizes the memory map so readers never block a remapping writer;
	// 0 lets bbolt grow it on demand.
	InitialMmapSize int
}

// DB is the bbolt database. It implements app.Store.
type DB struct {
	db   *bolt.DB
	path string
	gen  atomic.Uint64 // Update calls that have returned; see Generation

	backupProgram string   // see SetBackupFiles
	backupFiles   []string // see SetBackupFiles
}

var (
	_ app.Store        = (*DB)(nil)
	_ app.Generational = (*DB)(nil)
	_ app.Snapshotter  = (*DB)(nil)
)

// Open opens (creating if needed) the database at path, creates missing buckets and applies
// pending schema migrations in one transaction.
func Open(path string, opts Options) (*DB, error) {
	return open(path, opts, migrations)
}

func open(path string, opts Options, migs []migration) (*DB, error) {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	bdb, err := bolt.Open(path, fileMode, &bolt.Options{
		Timeout:         timeout,
		InitialMmapSize: opts.InitialMmapSize,
		// NoSync stays false: every commit is fsynced.
	})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("storage: open %s: %w (gave up after %s): %w", path, ErrLocked, timeout, err)
		}
		return nil, fmt.Errorf("storage: open %s: %w", path, err)
	}
	// An existing file may have been created with a looser mode; it holds secrets.
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, fileMode); err != nil {
			_ = bdb.Close()
			return nil, fmt.Errorf("storage: restrict mode of %s: %w", path, err)
		}
	}
	if opts.MaxBatchDelay > 0 {
		bdb.MaxBatchDelay = opts.MaxBatchDelay
	}
	if opts.MaxBatchSize > 0 {
		bdb.MaxBatchSize = opts.MaxBatchSize
	}
	if err := bdb.Update(func(tx *bolt.Tx) error { return migrate(tx, migs) }); err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("storage: open %s: %w", path, err)
	}
	return &DB{db: bdb, path: path}, nil
}

// Path is the database file.
func (d *DB) Path() string { return d.path }

// View runs fn in a read-only transaction.
func (d *DB) View(ctx context.Context, fn func(app.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return d.db.View(func(btx *bolt.Tx) error { return fn(&tx{tx: btx}) })
}

// Update runs fn in a read-write transaction that commits when fn returns nil. Concurrent
// calls are batched into one commit (one fsync); fn may therefore run more than once and
// must be idempotent. A context already cancelled stops the call before it starts.
func (d *DB) Update(ctx context.Context, fn func(app.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	defer d.gen.Add(1) // after the commit, even a failed one: a spurious change is harmless
	return d.db.Batch(func(btx *bolt.Tx) error { return fn(&tx{tx: btx}) })
}

// Generation counts the Update calls that have returned. Read before a View, it names a state
// at least that new: while it is unchanged nothing has been written since, so the service may
// reuse what it derived from the records (app.Generational).
func (d *DB) Generation() uint64 { return d.gen.Load() }

// Check reports whether the database is open and readable.
func (d *DB) Check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return d.db.View(func(btx *bolt.Tx) error {
		if btx.Bucket(bMeta) == nil {
			return errors.New("storage: meta bucket missing")
		}
		return nil
	})
}

// Close closes the database file.
func (d *DB) Close() error { return d.db.Close() }

// SchemaVersion returns the schema version stored in the file.
func (d *DB) SchemaVersion() (int, error) {
	var v int
	err := d.db.View(func(btx *bolt.Tx) error {
		v = readVersion(btx.Bucket(bMeta))
		return nil
	})
	return v, err
}

// Backup writes a consistent copy of the live database to w and returns its size. Writers
// are not blocked while it runs.
func (d *DB) Backup(w io.Writer) (int64, error) {
	var n int64
	err := d.db.View(func(btx *bolt.Tx) error {
		var err error
		n, err = btx.WriteTo(w)
		return err
	})
	return n, err
}

// BackupFile writes a consistent copy of db to path atomically: to a temporary file in the
// same directory (mode 0600), fsynced, then renamed over path.
func BackupFile(db *DB, path string) (n int64, err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return 0, fmt.Errorf("storage: backup: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err = f.Chmod(fileMode); err != nil {
		return 0, fmt.Errorf("storage: backup: %w", err)
	}
	if n, err = db.Backup(f); err != nil {
		return 0, fmt.Errorf("storage: backup: %w", err)
	}
	if err = f.Sync(); err != nil {
		return 0, fmt.Errorf("storage: backup: %w", err)
	}
	if err = f.Close(); err != nil {
		return 0, fmt.Errorf("storage: backup: %w", err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return 0, fmt.Errorf("storage: backup: %w", err)
	}
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync() // make the rename durable; best effort
		_ = d.Close()
	}
	return n, nil
}

// Schema.

var (
	bMeta                = []byte("meta")
	bUsers               = []byte("users")
	bUsersByName         = []byte("users_by_name")
	bSSHKeys             = []byte("ssh_keys")
	bSSHKeysByUser       = []byte("ssh_keys_by_user")
	bSSHKeysByFP         = []byte("ssh_keys_by_fp")
	bEgress              = []byte("egress")
	bHosts               = []byte("hosts")
	bHostsByShortID      = []byte("hosts_by_short_id")
	bHostsByUser         = []byte("hosts_by_user")
	bBindings            = []byte("bindings")
	bBindingsByHost      = []byte("bindings_by_host")
	bBindingsByEgress    = []byte("bindings_by_egress")
	bTokens              = []byte("tokens")
	bTokensByHash        = []byte("tokens_by_hash")
	bTokensByName        = []byte("tokens_by_name")
	bTokensByUser        = []byte("tokens_by_user")
	bTasks               = []byte("tasks")
	bTasksByTime         = []byte("tasks_by_time")
	bTasksByHost         = []byte("tasks_by_host")
	bTasksByState        = []byte("tasks_by_state")
	bEvents              = []byte("events")
	bEventsByHost        = []byte("events_by_host")
	bEventsByUser        = []byte("events_by_user")
	bEventsByType        = []byte("events_by_type")
	bRevocations         = []byte("revocations")
	bRevocationsByExpiry = []byte("revocations_by_expiry")

	keySchemaVersion = []byte("schema_version")
)

// migration moves the schema from version-1 to version.
type migration struct {
	version int
	name    string
	up      func(tx *bolt.Tx) error
}

// migrations is the schema history, in order. Append; never edit a released entry.
var migrations = []migration{
	{version: 1, name: "initial buckets", up: func(tx *bolt.Tx) error {
		return createBuckets(tx,
			bUsers, bUsersByName,
			bSSHKeys, bSSHKeysByUser, bSSHKeysByFP,
			bEgress,
			bHosts, bHostsByShortID, bHostsByUser,
			bBindings, bBindingsByHost, bBindingsByEgress,
			bTokens, bTokensByHash, bTokensByName, bTokensByUser,
			bTasks, bTasksByTime, bTasksByHost, bTasksByState,
			bEvents, bEventsByHost, bEventsByUser, bEventsByType,
			bRevocations, bRevocationsByExpiry,
		)
	}},
}

func createBuckets(tx *bolt.Tx, names ...[]byte) error {
	for _, n := range names {
		if _, err := tx.CreateBucketIfNotExists(n); err != nil {
			return fmt.Errorf("create bucket %s: %w", n, err)
		}
	}
	return nil
}

func readVersion(meta *bolt.Bucket) int {
	if meta == nil {
		return 0
	}
	v := meta.Get(keySchemaVersion)
	if len(v) != 8 {
		return 0
	}
	return int(binary.BigEndian.Uint64(v))
}

// migrate applies every migration newer than the stored version, recording each.
func migrate(tx *bolt.Tx, migs []migration) error {
	latest := 0
	if len(migs) > 0 {
		latest = migs[len(migs)-1].version
	}
	meta := tx.Bucket(bMeta)
	current := readVersion(meta)
	if current > latest {
		return fmt.Errorf("%w: file has schema version %d, this program knows up to %d; upgrade the program",
			ErrSchemaTooNew, current, latest)
	}
	if meta == nil {
		var err error
		if meta, err = tx.CreateBucket(bMeta); err != nil {
			return err
		}
	}
	for _, m := range migs {
		if m.version <= current {
			continue
		}
		if err := m.up(tx); err != nil {
			return fmt.Errorf("schema migration %d (%s): %w", m.version, m.name, err)
		}
		if err := meta.Put(keySchemaVersion, u64(uint64(m.version))); err != nil {
			return err
		}
		current = m.version
	}
	return nil
}
