package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// Options sizes a run; defaultOptions and tinyOptions are the two standard shapes.
type Options struct {
	Suite       string
	Clients     int           // concurrent HTTP clients (keep-alive connections)
	Duration    time.Duration // length of one HTTP measurement (after a warm-up of a fifth of it)
	MaxRequests int           // cap on requests in one HTTP measurement
	Calls       int           // in-process Authenticate calls per measurement
	Rounds      int           // baseline and ours alternate this many times in an HTTP measurement
	CacheDir    string        // where the events database is cached

	Hosts, HostUsers, Egress       int // case 1
	Events, EventHosts, EventUsers int // case 2
	Tokens, TokenUsers, TokenPool  int // case 3

	Logf func(format string, args ...any)
}

func defaultOptions() Options {
	return Options{Suite: "all", Clients: 64, Duration: 3 * time.Second, MaxRequests: 20000, Calls: 200000, Rounds: 3,
		CacheDir: defaultCacheDir(),
		Hosts:    1000, HostUsers: 100, Egress: 20,
		Events: 1000000, EventHosts: 1000, EventUsers: 100,
		Tokens: 100000, TokenUsers: 100, TokenPool: 1000,
		Logf: func(string, ...any) {}}
}

// tinyOptions is the shape the test runs: every case, in well under a second each.
func tinyOptions() Options {
	o := defaultOptions()
	o.Duration, o.MaxRequests, o.Calls, o.Rounds = 300*time.Millisecond, 300, 2000, 1
	o.Hosts, o.HostUsers, o.Egress = 50, 10, 5
	o.Events, o.EventHosts, o.EventUsers = 10000, 50, 10
	o.Tokens, o.TokenUsers, o.TokenPool = 1000, 10, 100
	return o
}

// Row is one line of the result table. Pass is nil for informational rows.
type Row struct {
	Case     string
	Unit     string // what ours and baseline count per second: req or call
	Ours     Stats
	Baseline string // what the baseline is
	Base     Stats
	Target   string
	NoRate   bool // latencies only (server-side times)
	Pass     *bool
	Notes    []string
}

// Ratio is ours' rate over the baseline's.
func (r Row) Ratio() float64 {
	if r.Base.Rate() == 0 {
		return 0
	}
	return r.Ours.Rate() / r.Base.Rate()
}

func verdict(ok bool) *bool { return &ok }

func fmtCount(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// runAPI is cases 1 and 2.
func runAPI(ctx context.Context, o Options) ([]Row, error) {
	var rows []Row
	r, err := hostsCase(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("hosts: %w", err)
	}
	rows = append(rows, r)
	rs, err := eventsCase(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	return append(rows, rs...), nil
}

// endpoint is one side of an HTTP comparison.
type endpoint struct {
	url   string // full URL, with the query
	path  string // the path the server timer files it under
	hdr   http.Header
	want  []byte
	timer *serverTimer
}

// measured is the outcome of one HTTP comparison: client-observed and server-side.
type measured struct {
	ours, base       Stats
	oursSrv, baseSrv Stats
}

// compare measures baseline and ours with the same load shape, interleaved.
func compare(ctx context.Context, o Options, clients int, ours, base endpoint) (measured, error) {
	l := Load{Clients: clients, Duration: o.Duration, MaxRequests: o.MaxRequests}
	lb, lo := l, l
	lb.URL, lb.Header, lb.Want = base.url, base.hdr, base.want
	lo.URL, lo.Header, lo.Want = ours.url, ours.hdr, ours.want
	var m measured
	var err error
	m.base, m.ours, err = Interleave(ctx, o.Rounds, lb, lo, func() {
		base.timer.start()
		ours.timer.start()
	})
	if err != nil {
		return m, err
	}
	m.baseSrv, m.oursSrv = base.timer.stats(base.path), ours.timer.stats(ours.path)
	return m, nil
}

// serverNote describes the server-side times of a comparison.
func (m measured) serverNote() string {
	return fmt.Sprintf("server time in handler: ours p50 %s, p99 %s; baseline p50 %s, p99 %s",
		fmtDur(m.oursSrv.P50), fmtDur(m.oursSrv.P99), fmtDur(m.baseSrv.P50), fmtDur(m.baseSrv.P99))
}

func hostsCase(ctx context.Context, o Options) (Row, error) {
	dir, err := os.MkdirTemp("", "ccp-bench-hosts-")
	if err != nil {
		return Row{}, err
	}
	defer os.RemoveAll(dir)
	t0 := time.Now()
	s, w, err := hostsFixture(ctx, dir, o.HostUsers, o.Hosts, o.Egress)
	if err != nil {
		return Row{}, err
	}
	defer s.Close()
	o.Logf("hosts: %d hosts, %d users, %d egress IPs, %d bindings written in %s", len(w.Hosts), len(w.Users), len(w.Egress), w.Bound, time.Since(t0).Round(time.Millisecond))
	const path = "/v1/admin/hosts"
	client, tr := newClient(1)
	defer tr.CloseIdleConnections()
	status, body, err := fetch(ctx, client, s.url+path, bearer(s.admin))
	if err != nil {
		return Row{}, err
	}
	var got struct {
		Hosts []app.HostView `json:"hosts"`
	}
	if err := json.Unmarshal(body, &got); err != nil || status != 200 {
		return Row{}, fmt.Errorf("GET %s: status %d, %v: %.200s", path, status, err, body)
	}
	bound := 0
	for _, h := range got.Hosts {
		if h.Egress != nil {
			bound++
		}
		if h.Username == "" {
			return Row{}, fmt.Errorf("host %s lists no username", h.ID)
		}
	}
	if len(got.Hosts) != o.Hosts || bound != w.Bound {
		return Row{}, fmt.Errorf("GET %s listed %d hosts, %d bound; want %d, %d", path, len(got.Hosts), bound, o.Hosts, w.Bound)
	}
	bareTimer := newServerTimer()
	bareURL, stop, err := bareServer(path, "application/json", body, bareTimer)
	if err != nil {
		return Row{}, err
	}
	defer stop()
	m, err := compare(ctx, o, o.Clients,
		endpoint{url: s.url + path, path: path, hdr: bearer(s.admin), want: body, timer: s.timer},
		endpoint{url: bareURL + path, path: path, want: body, timer: bareTimer})
	if err != nil {
		return Row{}, err
	}
	row := Row{Case: fmt.Sprintf("1. GET %s (%s hosts, %s)", path, fmtCount(o.Hosts), plural(o.Clients, "client")), Unit: "req",
		Ours: m.ours, Base: m.base, Baseline: "bare httprouter, same bytes",
		Target: "ours ≥ 50% of bare req/s"}
	row.Pass = verdict(row.Ratio() >= 0.5)
	row.Notes = append(row.Notes, fmt.Sprintf("response: %s bytes, %d hosts, %d with an egress binding", fmtCount(len(body)), len(got.Hosts), bound), m.serverNote())
	return row, nil
}

func eventsCase(ctx context.Context, o Options) ([]Row, error) {
	t0 := time.Now()
	s, meta, built, err := eventsFixture(ctx, o.CacheDir, o.Events, o.EventHosts, o.EventUsers, o.Logf)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if !built {
		o.Logf("events: using the cached database (%s events, built %s), opened in %s", fmtCount(meta.Events), meta.BuildTime, time.Since(t0).Round(time.Millisecond))
	}
	const route = "/v1/admin/events"
	q := url.Values{"host_id": {meta.HostID}, "since": {meta.Since.Format(time.RFC3339)},
		"until": {meta.Until.Format(time.RFC3339)}, "limit": {"50"}}
	path := route + "?" + q.Encode()
	client, tr := newClient(1)
	defer tr.CloseIdleConnections()
	status, body, err := fetch(ctx, client, s.url+path, bearer(s.admin))
	if err != nil {
		return nil, err
	}
	var page app.EventPage
	if err := json.Unmarshal(body, &page); err != nil || status != 200 {
		return nil, fmt.Errorf("GET %s: status %d, %v: %.200s", path, status, err, body)
	}
	if len(page.Events) != 50 || page.NextCursor == "" {
		return nil, fmt.Errorf("GET %s returned %d events (cursor %q); want exactly 50 and a next cursor", path, len(page.Events), page.NextCursor)
	}
	for _, e := range page.Events {
		if e.HostID != meta.HostID || e.Time.Before(meta.Since) || e.Time.After(meta.Until) {
			return nil, fmt.Errorf("GET %s returned event %s of host %s at %s, outside the query", path, e.ID, e.HostID, e.Time)
		}
	}
	bareTimer := newServerTimer()
	bareURL, stop, err := bareServer(route, "application/json", body, bareTimer)
	if err != nil {
		return nil, err
	}
	defer stop()
	var rows []Row
	for _, clients := range []int{o.Clients, 1} {
		m, err := compare(ctx, o, clients,
			endpoint{url: s.url + path, path: route, hdr: bearer(s.admin), want: body, timer: s.timer},
			endpoint{url: bareURL + path, path: route, want: body, timer: bareTimer})
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("2. GET %s?host_id&since&until&limit=50 (%s events, %s)", route, fmtCount(meta.Events), plural(clients, "client"))
		row := Row{Case: name, Unit: "req", Ours: m.ours, Base: m.base, Baseline: "bare httprouter, same bytes", Target: "ours p99 ≤ 2 ms"}
		row.Pass = verdict(m.ours.P99 <= 2*time.Millisecond)
		if clients == o.Clients {
			row.Notes = append(row.Notes, fmt.Sprintf("response: %s bytes, 50 of the %d events host %s has in the window", fmtCount(len(body)), meta.InWindow, meta.HostID))
		}
		row.Notes = append(row.Notes, m.serverNote())
		rows = append(rows, row)
		if clients == o.Clients {
			// The same requests, timed inside the server: what the server adds, without the
			// queueing that 64 closed-loop clients on few cores impose on every request.
			srv := Row{Case: name + ", server time", Unit: "req", Ours: m.oursSrv, Base: m.baseSrv, NoRate: true,
				Baseline: "bare httprouter, same bytes, timed the same way", Target: "ours p99 ≤ 2 ms"}
			srv.Pass = verdict(m.oursSrv.P99 <= 2*time.Millisecond)
			rows = append(rows, srv)
		}
	}
	return rows, nil
}

// runCalls runs fn(0) to fn(total-1) spread over goroutines and times each call.
func runCalls(ctx context.Context, goroutines, total int, fn func(i int) error) (Stats, error) {
	per := (total + goroutines - 1) / goroutines
	lats := make([][]time.Duration, goroutines)
	errs := make([]error, goroutines)
	var wg, ready sync.WaitGroup
	startGate := make(chan struct{})
	ready.Add(goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			my := make([]time.Duration, 0, per)
			ready.Done()
			<-startGate
			for i := g; i < total && ctx.Err() == nil; i += goroutines {
				t0 := time.Now()
				err := fn(i)
				lat := time.Since(t0)
				if err != nil {
					errs[g] = err
					return
				}
				my = append(my, lat)
			}
			lats[g] = my
		}()
	}
	ready.Wait()
	start := time.Now()
	close(startGate)
	wg.Wait()
	wall := time.Since(start)
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	for _, err := range errs {
		if err != nil {
			return summarize(all, wall, 1), err
		}
	}
	return summarize(all, wall, 0), ctx.Err()
}

// runTokens is case 3.
func runTokens(ctx context.Context, o Options) ([]Row, error) {
	dir, err := os.MkdirTemp("", "ccp-bench-tokens-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	t0 := time.Now()
	s, values, err := tokensFixture(ctx, dir, o.Tokens, o.TokenUsers)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	o.Logf("tokens: %s access tokens of %d users written in %s", fmtCount(len(values)), o.TokenUsers, time.Since(t0).Round(time.Millisecond))

	// Each measurement uses its own pool of tokens spread over the whole set, used once just
	// before it. A use writes nothing: it is counted in memory (usage audit, flushed in the
	// background), and the first use of a token in a minute also moves its in-memory
	// last_used_at, so the measurement sees the steady state as long as it lasts under a
	// minute.
	const ip = "127.0.0.1"
	newPool := func(k int) []string {
		rng := rand.New(rand.NewPCG(uint64(k), 7))
		pool := make([]string, 0, o.TokenPool)
		for _, i := range rng.Perm(len(values))[:min(o.TokenPool, len(values))] {
			pool = append(pool, values[i])
		}
		return pool
	}
	authWith := func(pool []string) func(i int) error {
		return func(i int) error {
			p, err := s.svc.Authenticate(ctx, ip, pool[i%len(pool)])
			if err != nil {
				return err
			}
			if p.Method != "token" || p.UserID == "" {
				return fmt.Errorf("token authenticated as %+v", p)
			}
			return nil
		}
	}
	// The floor: the same format check and HMAC, then a Go map instead of the store.
	byHash := make(map[string]bool, len(values))
	for _, v := range values {
		byHash[s.svc.HashTokenValue(v)] = true
	}
	floorWith := func(pool []string) func(i int) error {
		return func(i int) error {
			v := pool[i%len(pool)]
			if !app.WellFormedToken(v) {
				return fmt.Errorf("malformed token")
			}
			if !byHash[s.svc.HashTokenValue(v)] {
				return fmt.Errorf("token not found")
			}
			return nil
		}
	}
	var rows []Row
	for k, g := range []int{1, o.Clients} {
		pool := newPool(k)
		auth := authWith(pool)
		first, err := runCalls(ctx, 16, len(pool), auth)
		if err != nil {
			return nil, fmt.Errorf("first use of the pool: %w", err)
		}
		// Warm up, then measure the floor and ours back to back.
		if _, err := runCalls(ctx, g, o.Calls/10, auth); err != nil {
			return nil, err
		}
		base, err := runCalls(ctx, g, o.Calls, floorWith(pool))
		if err != nil {
			return nil, err
		}
		ours, err := runCalls(ctx, g, o.Calls, auth)
		if err != nil {
			return nil, err
		}
		row := Row{Case: fmt.Sprintf("3. svc.Authenticate(token), in-process, %s stored, %s", fmtCount(len(values)), plural(g, "goroutine")),
			Unit: "call", Ours: ours, Base: base, Baseline: "HMAC + Go map (no store)", Target: "ours p99 ≤ 20 µs"}
		row.Pass = verdict(ours.P99 <= 20*time.Microsecond)
		row.Notes = append(row.Notes, fmt.Sprintf("%s calls over a pool of %d tokens spread across the %s stored", fmtCount(ours.N), len(pool), fmtCount(len(values))))
		if g == 1 {
			row.Notes = append(row.Notes, fmt.Sprintf("first use of each token (moves last_used_at in memory, 16 goroutines): p50 %s, p99 %s, %s",
				fmtDur(first.P50), fmtDur(first.P99), fmtRate(first.Rate())))
		}
		rows = append(rows, row)
	}

	// HTTP view: the same server, an authenticated cheap route against an unauthenticated one.
	client, tr := newClient(1)
	defer tr.CloseIdleConnections()
	hdr := bearer(newPool(0)[0])
	st, me, err := fetch(ctx, client, s.url+"/v1/auth/me", hdr)
	if err != nil || st != 200 {
		return nil, fmt.Errorf("GET /v1/auth/me: status %d, %v: %.200s", st, err, me)
	}
	st, health, err := fetch(ctx, client, s.url+"/healthz", nil)
	if err != nil || st != 200 {
		return nil, fmt.Errorf("GET /healthz: status %d, %v: %.200s", st, err, health)
	}
	for _, c := range []int{o.Clients, 1} {
		m, err := compare(ctx, o, c,
			endpoint{url: s.url + "/v1/auth/me", path: "/v1/auth/me", hdr: hdr, want: me, timer: s.timer},
			endpoint{url: s.url + "/healthz", path: "/healthz", want: health, timer: s.timer})
		if err != nil {
			return nil, err
		}
		row := Row{Case: fmt.Sprintf("3. GET /v1/auth/me with a token vs GET /healthz (%s)", plural(c, "client")), Unit: "req",
			Ours: m.ours, Base: m.base, Baseline: "GET /healthz, no auth, same server", Target: "info: cost of token auth"}
		perReq := time.Duration(float64(time.Second)/m.ours.Rate() - float64(time.Second)/m.base.Rate())
		row.Notes = append(row.Notes, fmt.Sprintf("added per request: %s of machine time at saturation (1/rate), %s at client p50, %s at server p50",
			fmtDur(perReq), fmtDur(m.ours.P50-m.base.P50), fmtDur(m.oursSrv.P50-m.baseSrv.P50)), m.serverNote())
		rows = append(rows, row)
	}
	return rows, nil
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmtCount(n) + " " + what + "s"
}
