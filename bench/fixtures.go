package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"
	"github.com/julienschmidt/httprouter"
	"golang.org/x/crypto/bcrypt"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/api"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/storage"
)

// Fixed secrets of the bench server. The token hash key must not change between runs: the
// cached events database holds an admin token hashed under it.
var (
	benchJWTSecret = []byte("cloud-cli-proxy-bench-jwt-secret-0123456789")
	benchTokenKey  = []byte("cloud-cli-proxy-bench-token-hash-key-v1")
)

// benchEpoch anchors every generated time, so fixtures look the same on every run.
var benchEpoch = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)

// server is the real thing: storage on a bbolt file, the service, the REST door with the rate
// limit disabled, served on a loopback listener.
type server struct {
	db    *storage.DB
	svc   *app.Service
	url   string
	admin string // an admin access token value
	timer *serverTimer
	stop  func()
}

func (s *server) Close() {
	if s.stop != nil {
		s.stop()
	}
	if s.db != nil {
		_ = s.db.Close()
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// openDB opens the bench database with the options cmd/serve uses.
func openDB(path string) (*storage.DB, error) {
	return storage.Open(path, storage.Options{MaxBatchDelay: 2 * time.Millisecond, Timeout: 5 * time.Second})
}

func newService(db *storage.DB) (*app.Service, error) {
	return app.New(app.Config{
		JWTSecret: benchJWTSecret, TokenHashKey: benchTokenKey, BcryptCost: bcrypt.MinCost,
		PublicHost: "ccp.example.com", SSHProxyPort: 2222,
		ReconcileInterval: -1, // no background reconciler touching hosts while we measure
	}, app.Deps{Store: db, Logger: discardLogger()})
}

// startServer wraps an open database in the service and the REST door and serves it.
func startServer(db *storage.DB, adminToken string) (*server, error) {
	svc, err := newService(db)
	if err != nil {
		return nil, err
	}
	rest := api.New(svc, api.Config{RateLimitPerMinute: 0}, discardLogger())
	timer := newServerTimer()
	url, stop, err := serveLoopback(timer.wrap(rest.Handler()))
	if err != nil {
		return nil, err
	}
	return &server{db: db, svc: svc, url: url, admin: adminToken, timer: timer, stop: stop}, nil
}

func bearer(token string) http.Header {
	return http.Header{"Authorization": {"Bearer " + token}}
}

// bareHandler is a bare httprouter serving fixed bytes on one GET path.
func bareHandler(path, contentType string, body []byte) http.Handler {
	r := httprouter.New()
	r.GET(path, func(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) {
		w.Header().Set("Content-Type", contentType)
		_, _ = w.Write(body)
	})
	return r
}

// idGen makes deterministic UUIDs and short ids from a seeded generator.
type idGen struct{ r *rand.Rand }

func newIDGen(seed uint64) *idGen {
	return &idGen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

func (g *idGen) uuid() string {
	var b [16]byte
	for i := range b {
		b[i] = byte(g.r.Uint32())
	}
	u, _ := uuid.FromBytes(b[:])
	u[6] = (u[6] & 0x0f) | 0x40 // version 4
	u[8] = (u[8] & 0x3f) | 0x80 // RFC 4122 variant
	return u.String()
}

const shortAlphabet = "abcdefghijklmnopqrstuvwxyz234567"

func (g *idGen) short() string {
	b := make([]byte, 8)
	for i := range b {
		b[i] = shortAlphabet[g.r.IntN(len(shortAlphabet))]
	}
	return string(b)
}

// world is the users, egress IPs and hosts a fixture put in the store.
type world struct {
	AdminID string
	Users   []app.User
	Hosts   []app.Host
	Egress  []app.EgressIP
	Bound   int
}

// seedWorld writes an admin (with an access token whose value it returns), users, egress IPs,
// hosts and bindings (about 60% of hosts bound) directly through the store, in batches.
func seedWorld(ctx context.Context, db *storage.DB, svc *app.Service, g *idGen, nUsers, nHosts, nEgress int) (world, string, error) {
	pw, err := bcrypt.GenerateFromPassword([]byte("bench-password"), bcrypt.MinCost)
	if err != nil {
		return world{}, "", err
	}
	var w world
	at := func(days float64) time.Time {
		return benchEpoch.Add(-time.Duration(days * float64(24*time.Hour))).Truncate(time.Microsecond)
	}
	admin := app.User{ID: g.uuid(), Username: "admin", Role: app.RoleAdmin, Status: app.UserActive,
		CreatedAt: at(200), UpdatedAt: at(200), PasswordHash: string(pw), Version: 1}
	w.AdminID = admin.ID
	adminToken := app.NewTokenValue()
	adminTok := app.AccessToken{ID: g.uuid(), UserID: admin.ID, Name: "bench", Hash: svc.HashTokenValue(adminToken),
		Hint: "…" + adminToken[len(adminToken)-4:], Write: true, Active: true, CreatedAt: at(1), UpdatedAt: at(1)}
	for i := range nUsers {
		c := at(180 - float64(i)*170/float64(max(nUsers, 1)))
		role := app.RoleUser
		if i%25 == 7 {
			role = app.RoleViewer
		}
		u := app.User{ID: g.uuid(), Username: fmt.Sprintf("dev.%s%03d", []string{"ana", "ben", "chen", "dana", "eli"}[i%5], i),
			Role: role, Status: app.UserActive, CreatedAt: c, UpdatedAt: c, PasswordHash: string(pw), Version: 1}
		if i%17 == 3 { // a fixed-term account, valid whenever the bench runs
			exp := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 6, 0)
			u.ExpiresAt = &exp
		}
		w.Users = append(w.Users, u)
	}
	providers := []string{"hetzner", "ovh", "aws", "vultr"}
	for i := range nEgress {
		c := at(190 - float64(i))
		e := app.EgressIP{ID: g.uuid(), Label: fmt.Sprintf("%s-%s-%02d", providers[i%4], []string{"fra", "ams", "nyc", "sgp", "syd"}[i%5], i),
			IPAddress: fmt.Sprintf("203.0.113.%d", 10+i), TunnelType: app.TunnelWireGuard, Provider: providers[i%4],
			WGEndpoint: fmt.Sprintf("198.51.100.%d:51820", 10+i), WGPublicKey: "bm90LWEtcmVhbC1rZXktYnV0LWxvb2tzLWxpa2Utb25lPQ==",
			WGPrivateKey: "cHJpdmF0ZS1rZXktbm90LXJlYWwtYnV0LTQ0LWNoYXJzPQ==", WGAllowedIPs: "0.0.0.0/0, ::/0",
			WGDNSServer: "1.1.1.1", WGPeerAddress: fmt.Sprintf("10.66.%d.2/32", i), CreatedAt: c, UpdatedAt: c}
		w.Egress = append(w.Egress, e)
	}
	statuses := []app.HostState{app.HostRunning, app.HostRunning, app.HostRunning, app.HostRunning, app.HostRunning,
		app.HostRunning, app.HostStopped, app.HostStopped, app.HostError, app.HostRunning}
	images := []string{"cloud-cli-proxy/managed:latest", "cloud-cli-proxy/managed:2026.1", "ghcr.io/acme/devbox:1.4.2"}
	var bindings []app.Binding
	for i := range nHosts {
		c := at(170 - float64(i)*160/float64(max(nHosts, 1)))
		st := statuses[i%len(statuses)]
		h := app.Host{ID: g.uuid(), ShortID: g.short(), UserID: w.Users[g.r.IntN(len(w.Users))].ID, Image: images[i%3],
			CPU: []float64{0.5, 1, 2, 4}[i%4], MemoryMB: []int64{1024, 2048, 4096, 8192}[i%4], PIDs: 512,
			Status: st, DesiredState: app.HostRunning, ContainerID: fmt.Sprintf("%064x", g.r.Uint64()),
			CreatedAt: c, UpdatedAt: c.Add(time.Duration(g.r.IntN(72)) * time.Hour)}
		switch st {
		case app.HostStopped:
			h.DesiredState = app.HostStopped
		case app.HostError:
			h.LastError = "container exited with code 137 (out of memory)"
		}
		w.Hosts = append(w.Hosts, h)
		if len(w.Egress) > 0 && g.r.IntN(10) < 6 {
			bindings = append(bindings, app.Binding{ID: g.uuid(), HostID: h.ID, EgressIPID: w.Egress[g.r.IntN(len(w.Egress))].ID, CreatedAt: c})
		}
	}
	w.Bound = len(bindings)
	err = db.Update(ctx, func(tx app.Tx) error {
		if err := tx.PutUser(admin); err != nil {
			return err
		}
		if err := tx.PutToken(adminTok); err != nil {
			return err
		}
		for _, u := range w.Users {
			if err := tx.PutUser(u); err != nil {
				return err
			}
		}
		for _, e := range w.Egress {
			if err := tx.PutEgress(e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return world{}, "", err
	}
	const batch = 500
	for i := 0; i < len(w.Hosts); i += batch {
		hs := w.Hosts[i:min(i+batch, len(w.Hosts))]
		if err := db.Update(ctx, func(tx app.Tx) error {
			for _, h := range hs {
				if err := tx.PutHost(h); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return world{}, "", err
		}
	}
	for i := 0; i < len(bindings); i += batch {
		bs := bindings[i:min(i+batch, len(bindings))]
		if err := db.Update(ctx, func(tx app.Tx) error {
			for _, b := range bs {
				if err := tx.PutBinding(b); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return world{}, "", err
		}
	}
	return w, adminToken, nil
}

// hostsFixture is a fresh database in dir with nHosts hosts.
func hostsFixture(ctx context.Context, dir string, nUsers, nHosts, nEgress int) (*server, world, error) {
	db, err := openDB(filepath.Join(dir, "hosts.db"))
	if err != nil {
		return nil, world{}, err
	}
	svc, err := newService(db)
	if err != nil {
		db.Close()
		return nil, world{}, err
	}
	w, tok, err := seedWorld(ctx, db, svc, newIDGen(1), nUsers, nHosts, nEgress)
	if err != nil {
		db.Close()
		return nil, world{}, err
	}
	s, err := startServer(db, tok)
	if err != nil {
		db.Close()
		return nil, world{}, err
	}
	return s, w, nil
}

// Events fixture.

// eventsFixtureVersion keys the cached events database. Bump it whenever the generator
// below, the record encoding or the index layout changes, so stale caches are rebuilt.
const eventsFixtureVersion = "events-v1"

// eventsMeta is the sidecar of a cached events database: what it holds and the query the
// bench runs against it.
type eventsMeta struct {
	Version    string    `json:"version"`
	Events     int       `json:"events"`
	Hosts      int       `json:"hosts"`
	Users      int       `json:"users"`
	AdminToken string    `json:"admin_token"`
	HostID     string    `json:"host_id"`
	Since      time.Time `json:"since"`
	Until      time.Time `json:"until"`
	InWindow   int       `json:"in_window"` // events of HostID between Since and Until
	BuildTime  string    `json:"build_time"`
}

const eventSpan = 60 * 24 * time.Hour

// eventsFixture opens the cached events database for these sizes, building it first when it
// is missing. built reports whether it was built now.
func eventsFixture(ctx context.Context, cacheDir string, nEvents, nHosts, nUsers int, logf func(string, ...any)) (*server, eventsMeta, bool, error) {
	if err := os.MkdirAll(cacheDir, 0o700); err != nil {
		return nil, eventsMeta{}, false, err
	}
	base := filepath.Join(cacheDir, fmt.Sprintf("%s-%de-%dh-%du", eventsFixtureVersion, nEvents, nHosts, nUsers))
	dbPath, metaPath := base+".db", base+".json"
	var meta eventsMeta
	built := false
	raw, err := os.ReadFile(metaPath)
	if err == nil {
		err = json.Unmarshal(raw, &meta)
	}
	if _, serr := os.Stat(dbPath); err != nil || serr != nil || meta.Version != eventsFixtureVersion || meta.Events != nEvents {
		logf("building the events database (%d events, %d hosts, %d users) at %s; it is cached for later runs", nEvents, nHosts, nUsers, dbPath)
		t0 := time.Now()
		meta, err = buildEvents(ctx, dbPath, metaPath, nEvents, nHosts, nUsers)
		if err != nil {
			return nil, eventsMeta{}, false, fmt.Errorf("building the events fixture: %w", err)
		}
		logf("built in %s", time.Since(t0).Round(time.Millisecond))
		built = true
	}
	db, err := openDB(dbPath)
	if err != nil {
		return nil, eventsMeta{}, false, err
	}
	s, err := startServer(db, meta.AdminToken)
	if err != nil {
		db.Close()
		return nil, eventsMeta{}, false, err
	}
	return s, meta, built, nil
}

var hostActions = []string{app.TaskHostStart, app.TaskHostStop, app.TaskHostStart, app.TaskHostStop, app.TaskHostRebuild,
	app.TaskHostCreate, app.TaskHostRotateSSH, app.TaskHostDelete, "host.status"}

// buildEvents writes a new database to a temporary file and renames it into place with its
// sidecar, so an interrupted build never leaves a half-filled cache behind.
func buildEvents(ctx context.Context, dbPath, metaPath string, nEvents, nHosts, nUsers int) (eventsMeta, error) {
	tmp := dbPath + ".building"
	_ = os.Remove(tmp)
	db, err := openDB(tmp)
	if err != nil {
		return eventsMeta{}, err
	}
	defer func() {
		db.Close()
		_ = os.Remove(tmp)
	}()
	svc, err := newService(db)
	if err != nil {
		return eventsMeta{}, err
	}
	g := newIDGen(2)
	w, adminToken, err := seedWorld(ctx, db, svc, g, nUsers, nHosts, 20)
	if err != nil {
		return eventsMeta{}, err
	}
	users := map[string]app.User{}
	for _, u := range w.Users {
		users[u.ID] = u
	}
	start := benchEpoch.Add(-eventSpan)
	since, until := start.Add(eventSpan/5), start.Add(eventSpan*4/5)
	inWindow := map[string]int{}
	step := eventSpan / time.Duration(nEvents)
	r := g.r
	ev := func(i int) app.Event {
		t := start.Add(time.Duration(i)*step + time.Duration(r.Int64N(int64(max(step, 1))))).Truncate(time.Microsecond)
		ip := fmt.Sprintf("10.%d.%d.%d", r.IntN(4), r.IntN(256), 1+r.IntN(254))
		if r.IntN(10) < 7 { // a host action, by its owner (access token) or an admin (session)
			h := w.Hosts[r.IntN(len(w.Hosts))]
			owner := users[h.UserID]
			e := app.Event{Time: t, Action: hostActions[r.IntN(len(hostActions))], Result: app.ResultSuccess,
				TargetType: "host", TargetID: h.ID, HostID: h.ID, UserID: h.UserID, SourceIP: ip,
				Message: "task " + g.uuid()}
			if r.IntN(2) == 0 {
				e.ActorID, e.ActorName, e.AuthMethod = w.AdminID, "admin", "jwt"
			} else {
				e.ActorID, e.ActorName, e.AuthMethod = owner.ID, owner.Username, "token"
				e.TokenID, e.TokenName = g.uuid(), "laptop"
			}
			if r.IntN(50) == 0 {
				e.Result, e.Message = app.ResultFailure, "runtime_unavailable: the container engine is not reachable"
			}
			if !t.Before(since) && !t.After(until) {
				inWindow[h.ID]++
			}
			return e
		}
		u := w.Users[r.IntN(len(w.Users))]
		switch r.IntN(4) {
		case 0:
			return app.Event{Time: t, Action: "auth.login", Result: app.ResultSuccess, ActorID: u.ID, ActorName: u.Username,
				AuthMethod: "password", SourceIP: ip, UserID: u.ID}
		case 1:
			return app.Event{Time: t, Action: "auth.login", Result: app.ResultFailure, ActorName: u.Username,
				AuthMethod: "anonymous", SourceIP: ip, UserID: u.ID, Message: "invalid credentials"}
		case 2:
			return app.Event{Time: t, Action: "token.create", Result: app.ResultSuccess, ActorID: u.ID, ActorName: u.Username,
				AuthMethod: "jwt", SourceIP: ip, TargetType: "token", TargetID: g.uuid(), UserID: u.ID, Message: "ci-deploy"}
		default:
			return app.Event{Time: t, Action: "user.update", Result: app.ResultSuccess, ActorID: w.AdminID, ActorName: "admin",
				AuthMethod: "jwt", SourceIP: ip, TargetType: "user", TargetID: u.ID, UserID: u.ID, Message: u.Username}
		}
	}
	const batch = 10000
	buf := make([]app.Event, 0, batch)
	for i := 0; i < nEvents; i += batch {
		buf = buf[:0]
		for j := i; j < min(i+batch, nEvents); j++ {
			buf = append(buf, ev(j))
		}
		if err := db.Update(ctx, func(tx app.Tx) error {
			for k := range buf {
				e := buf[k] // a copy: Update may run this function more than once
				if err := tx.AddEvent(&e); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return eventsMeta{}, err
		}
	}
	// The queried host: the busiest one in the window, so limit=50 is always a full page.
	var hostID string
	for _, h := range w.Hosts {
		if inWindow[h.ID] > inWindow[hostID] {
			hostID = h.ID
		}
	}
	if inWindow[hostID] < 51 {
		return eventsMeta{}, fmt.Errorf("no host has 51 events in the window (best %d): use more events or fewer hosts", inWindow[hostID])
	}
	meta := eventsMeta{Version: eventsFixtureVersion, Events: nEvents, Hosts: nHosts, Users: nUsers, AdminToken: adminToken,
		HostID: hostID, Since: since, Until: until, InWindow: inWindow[hostID], BuildTime: time.Now().UTC().Format(time.RFC3339)}
	if err := db.Close(); err != nil {
		return eventsMeta{}, err
	}
	if err := os.Rename(tmp, dbPath); err != nil {
		return eventsMeta{}, err
	}
	raw, _ := json.MarshalIndent(meta, "", "  ")
	if err := os.WriteFile(metaPath, raw, 0o600); err != nil {
		return eventsMeta{}, err
	}
	return meta, nil
}

// Tokens fixture.

// tokensFixture is a fresh database with nTokens access tokens of nUsers users; it returns
// their values in insertion order.
func tokensFixture(ctx context.Context, dir string, nTokens, nUsers int) (*server, []string, error) {
	db, err := openDB(filepath.Join(dir, "tokens.db"))
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*server, []string, error) {
		db.Close()
		return nil, nil, err
	}
	svc, err := newService(db)
	if err != nil {
		return fail(err)
	}
	g := newIDGen(3)
	w, adminToken, err := seedWorld(ctx, db, svc, g, nUsers, 0, 0)
	if err != nil {
		return fail(err)
	}
	values := make([]string, nTokens)
	toks := make([]app.AccessToken, nTokens)
	names := []string{"ci", "laptop", "deploy", "backup", "terraform", "monitoring"}
	for i := range toks {
		v := app.NewTokenValue()
		values[i] = v
		c := benchEpoch.Add(-time.Duration(g.r.IntN(90*24)) * time.Hour)
		t := app.AccessToken{ID: g.uuid(), UserID: w.Users[i%len(w.Users)].ID, Name: fmt.Sprintf("%s-%05d", names[i%len(names)], i),
			Hash: svc.HashTokenValue(v), Hint: "…" + v[len(v)-4:], Write: i%3 != 0, Active: true, CreatedAt: c, UpdatedAt: c}
		if i%10 < 7 { // most expire, relative to now so they are valid whenever the bench runs
			exp := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, 30+i%60)
			t.ExpiresAt = &exp
		}
		toks[i] = t
	}
	const batch = 10000
	for i := 0; i < len(toks); i += batch {
		ts := toks[i:min(i+batch, len(toks))]
		if err := db.Update(ctx, func(tx app.Tx) error {
			for _, t := range ts {
				if err := tx.PutToken(t); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return fail(err)
		}
	}
	s, err := startServer(db, adminToken)
	if err != nil {
		return fail(err)
	}
	return s, values, nil
}

// defaultCacheDir is where the events database is cached between runs.
func defaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "cloud-cli-proxy-bench")
	}
	return filepath.Join(os.TempDir(), "cloud-cli-proxy-bench")
}
