package api_test

import (
	"bufio"
	"bytes"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/api"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/metrics"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/testenv"
)

// withMetrics gives the server m: app's observer, the door's request counters and /metrics
// on the API port.
func withMetrics(m *metrics.Metrics) envOption {
	return func(_ *app.Config, d *app.Deps, c *api.Config) {
		d.Observer, c.Metrics, c.MetricsHandler = m, m, m.Handler()
	}
}

// scrape reads /metrics as the admin and returns the samples by their full name with labels.
func (e *env) scrape() map[string]float64 {
	e.t.Helper()
	r := e.do("GET", "/metrics", e.admin, nil, 200, nil)
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(r.Body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			e.t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

func TestMetricsChangeAfterRequests(t *testing.T) {
	m := metrics.New()
	e := newEnv(t, withMetrics(m), withRateLimit(1000), withRuntime(&testenv.Runtime{}), withConfig(func(c *app.Config) { c.MaxSessionsPerUser = 1 }))
	m.WatchState(e.svc, func() (int64, error) {
		fi, err := os.Stat(e.db.Path())
		if err != nil {
			return 0, err
		}
		return fi.Size(), nil
	})
	before := e.scrape()

	// Requests by route pattern and status.
	uid, _ := e.user("metrics-alice", app.RoleUser)
	e.do("GET", "/v1/admin/users/"+uid, e.admin, nil, 200, nil)
	e.do("GET", "/v1/admin/users/no-such-user", e.admin, nil, 404, nil)
	e.do("GET", "/v1/no-such-route", e.admin, nil, 404, nil)
	// A failed sign-in and a rejected bearer credential.
	e.do("POST", "/v1/auth/login", "", map[string]string{"username": "metrics-alice", "password": "wrong-password"}, 401, nil)
	e.do("GET", "/v1/auth/me", "not-a-jwt", nil, 401, nil)
	// A task, and the host it leaves running.
	hostID := e.host(uid)
	e.waitIdle(hostID)
	// Sessions: a desktop (REST door), a TUI door shell refused over the per-user limit.
	p := app.Principal{UserID: uid, Username: "metrics-alice", Role: app.RoleUser, Method: app.MethodPassword}
	vnc, err := e.svc.TrackSession(p, app.SessionVNC, hostID, "", "test desktop", func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	shell, err := e.svc.TrackSession(p, app.SessionShell, hostID, "", "test shell", func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.TrackSession(p, app.SessionShell, hostID, "", "second shell", func(string) {}); err == nil {
		t.Fatal("second shell over SSH_MAX_SESSIONS_PER_USER=1 was allowed")
	}
	mid := e.scrape()
	shell.Close()
	vnc.Close()
	after := e.scrape()

	delta := func(now map[string]float64, key string) float64 { return now[key] - before[key] }
	for key, want := range map[string]float64{
		`cloudcliproxy_http_requests_total{method="GET",route="/v1/admin/users/:id",status="200"}`:                 1,
		`cloudcliproxy_http_requests_total{method="GET",route="/v1/admin/users/:id",status="404"}`:                 1,
		`cloudcliproxy_http_requests_total{method="GET",route="unmatched",status="404"}`:                           1,
		`cloudcliproxy_http_requests_total{method="POST",route="/v1/auth/login",status="401"}`:                     1,
		`cloudcliproxy_http_request_duration_seconds_count{method="GET",route="/v1/admin/users/:id",status="200"}`: 1,
		`cloudcliproxy_login_failures_total{door="api",method="password"}`:                                         1,
		`cloudcliproxy_login_failures_total{door="api",method="jwt"}`:                                              1,
		`cloudcliproxy_tasks_total{kind="host.create",state="succeeded"}`:                                          1,
		`cloudcliproxy_task_duration_seconds_count{kind="host.create",state="succeeded"}`:                          1,
		`cloudcliproxy_hosts{status="running"}`:                                                                    1,
		`cloudcliproxy_sessions_total{door="api",kind="vnc"}`:                                                      1,
		`cloudcliproxy_sessions_total{door="tui",kind="shell"}`:                                                    1,
		`cloudcliproxy_sessions_refused_total{door="tui",reason="limit"}`:                                          1,
	} {
		if got := delta(after, key); got != want {
			t.Errorf("%s changed by %v, want %v", key, got, want)
		}
	}
	if got := mid[`cloudcliproxy_sessions_open{door="api",kind="vnc"}`]; got != 1 {
		t.Errorf("open desktops while open: %v", got)
	}
	if got := after[`cloudcliproxy_sessions_open{door="api",kind="vnc"}`]; got != 0 {
		t.Errorf("open desktops after close: %v", got)
	}
	if after[`cloudcliproxy_db_size_bytes`] <= 0 || delta(after, `cloudcliproxy_db_transaction_duration_seconds_count{kind="update"}`) <= 0 {
		t.Errorf("database metrics: size %v, updates %v", after[`cloudcliproxy_db_size_bytes`],
			delta(after, `cloudcliproxy_db_transaction_duration_seconds_count{kind="update"}`))
	}
	if after[`cloudcliproxy_state_scrape_ok`] != 1 {
		t.Error("the service's state could not be read at scrape")
	}
}

func TestMetricsOnAPIPortNeedAdmin(t *testing.T) {
	m := metrics.New()
	e := newEnv(t, withMetrics(m))
	_, alice := e.user("metrics-bob", app.RoleUser)
	_, viewer := e.user("metrics-viewer", app.RoleViewer)
	e.do("GET", "/metrics", "", nil, 401, nil)
	e.do("GET", "/metrics", alice, nil, 403, nil)
	e.do("GET", "/metrics", viewer, nil, 403, nil)
	r := e.do("GET", "/metrics", e.admin, nil, 200, nil)
	if !strings.Contains(string(r.Body), "cloudcliproxy_http_requests_total") {
		t.Errorf("no request counters in:\n%.500s", r.Body)
	}
	// Without a metrics handler the path is no route at all.
	plain := newEnv(t)
	plain.do("GET", "/metrics", plain.admin, nil, 404, nil)
}

func TestRateLimitRefusalsCounted(t *testing.T) {
	m := metrics.New()
	e := newEnv(t, withMetrics(m), withRateLimit(3))
	got429 := false
	for i := 0; i < 10 && !got429; i++ {
		got429 = e.raw("GET", "/v1/no-such-route", "", nil).Status == http.StatusTooManyRequests
	}
	if !got429 {
		t.Fatal("rate limit never refused")
	}
	var n float64
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "cloudcliproxy_rate_limited_total" {
			n = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if n < 1 {
		t.Errorf("rate_limited_total = %v", n)
	}
}

func TestRequestIDRoundTripAndOnEvent(t *testing.T) {
	e := newEnv(t)
	// A sane incoming id is kept, answered and recorded on the audit event.
	req, _ := http.NewRequest("POST", e.srv.URL+"/v1/admin/users", strings.NewReader(`{"username":"rid-carol","password":"password-rid-carol","role":"user"}`))
	req.Header.Set("Authorization", "Bearer "+e.admin)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", "client-id-42")
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 201 || res.Header.Get("X-Request-Id") != "client-id-42" {
		t.Fatalf("status %d, X-Request-Id %q", res.StatusCode, res.Header.Get("X-Request-Id"))
	}
	var page struct {
		Events []app.Event `json:"events"`
	}
	e.do("GET", "/v1/admin/events?type=user.create", e.admin, nil, 200, &page)
	if len(page.Events) == 0 || page.Events[0].RequestID != "client-id-42" {
		t.Fatalf("user.create events: %+v", page.Events)
	}
	// An insane one is replaced by a generated id, which is recorded the same way.
	for _, bad := range []string{"", "has space", strings.Repeat("x", 200), "quote\"s"} {
		req, _ := http.NewRequest("POST", e.srv.URL+"/v1/auth/login", strings.NewReader(`{"username":"nobody","password":"wrong-password"}`))
		req.Header.Set("Content-Type", "application/json")
		if bad != "" {
			req.Header.Set("X-Request-Id", bad)
		}
		res, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		id := res.Header.Get("X-Request-Id")
		if id == "" || id == bad || len(id) != 32 {
			t.Errorf("incoming %q: answered X-Request-Id %q", bad, id)
			continue
		}
		e.do("GET", "/v1/admin/events?type=auth.login", e.admin, nil, 200, &page)
		found := false
		for _, ev := range page.Events {
			found = found || ev.RequestID == id
		}
		if !found {
			t.Errorf("no auth.login event with request id %s", id)
		}
	}
}
