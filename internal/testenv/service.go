package testenv

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/storage"
)

// Epoch is the time a Clock made by NewService starts at.
var Epoch = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// Clock is a settable app.Clock, safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock standing at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// Add moves the clock on by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// DiscardLogger is a text logger that writes nowhere.
func DiscardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// OpenDB opens the bbolt store at path, or at a new file in t.TempDir() when path is "",
// with a short batch delay, and closes it when the test ends (closing it earlier is fine).
func OpenDB(t testing.TB, path string) *storage.DB {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "test.db")
	}
	db, err := storage.Open(path, storage.Options{MaxBatchDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Setup is what NewService builds the service from; options change it. Before the options
// Config has a 40-byte JWT secret and bcrypt cost 4, Deps a Clock at Epoch and
// DiscardLogger; Deps.Store is set after them, to the store opened at DBPath.
type Setup struct {
	Config app.Config
	Deps   app.Deps
	// DBPath is the bbolt file; "" means a new one in the test's temporary directory.
	DBPath string

	wrapStore func(app.Store) app.Store
}

// Option changes the Setup of NewService.
type Option func(*Setup)

// WithConfig lets fn change the service's configuration.
func WithConfig(fn func(*app.Config)) Option { return func(s *Setup) { fn(&s.Config) } }

// WithDeps lets fn change the service's parts (but Store: see WithStore).
func WithDeps(fn func(*app.Deps)) Option { return func(s *Setup) { fn(&s.Deps) } }

// WithRuntime gives the service rt as its container engine.
func WithRuntime(rt app.Runtime) Option { return func(s *Setup) { s.Deps.Runtime = rt } }

// WithTunnel gives the service tun as its egress room.
func WithTunnel(tun app.Tunnel) Option { return func(s *Setup) { s.Deps.Tunnel = tun } }

// WithDBPath puts the store in the file at path (kept across services, as over a restart).
func WithDBPath(path string) Option { return func(s *Setup) { s.DBPath = path } }

// WithStore gives the service wrap(db) as its store instead of the bbolt store db itself.
func WithStore(wrap func(db app.Store) app.Store) Option {
	return func(s *Setup) { s.wrapStore = wrap }
}

// Env is a service built by NewService, with the parts a test reaches for.
type Env struct {
	Service *app.Service
	DB      *storage.DB
	// Clock is the clock NewService made: the service's, unless an option replaced it.
	Clock  *Clock
	Logger *slog.Logger // the service's

	t    testing.TB
	mu   sync.Mutex
	stop func() // of what Start began; nil when nothing runs
}

// NewService builds an app.Service over a bbolt store (closed when the test ends) with a
// settable clock and a discarding logger, as opts change it. Its background work is not
// started: see Start.
func NewService(t testing.TB, opts ...Option) *Env {
	t.Helper()
	clk := NewClock(Epoch)
	s := Setup{
		Config: app.Config{JWTSecret: []byte(strings.Repeat("s", 40)), BcryptCost: 4},
		Deps:   app.Deps{Clock: clk, Logger: DiscardLogger()},
	}
	for _, o := range opts {
		o(&s)
	}
	db := OpenDB(t, s.DBPath)
	s.Deps.Store = db
	if s.wrapStore != nil {
		s.Deps.Store = s.wrapStore(db)
	}
	svc, err := app.New(s.Config, s.Deps)
	if err != nil {
		t.Fatal(err)
	}
	return &Env{Service: svc, DB: db, Clock: clk, Logger: s.Deps.Logger, t: t}
}

// Start runs the service's background work (workers, reconciler) until Stop or the end of
// the test, and returns the context it runs under.
func (e *Env) Start() context.Context {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	wait, err := e.Service.Start(ctx)
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	e.mu.Lock()
	e.stop = func() { cancel(); wait() }
	e.mu.Unlock()
	e.t.Cleanup(e.Stop)
	return ctx
}

// Stop ends the background work Start began and waits for it; later calls do nothing.
func (e *Env) Stop() {
	e.mu.Lock()
	stop := e.stop
	e.stop = nil
	e.mu.Unlock()
	if stop != nil {
		stop()
	}
}
