package api_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/testenv"
)

// gatedRuntime is the in-memory engine whose Create waits until gate is closed, so a test
// can look at a bootstrap task while it is still in progress.
type gatedRuntime struct {
	*testenv.Runtime
	gate chan struct{}
}

func (g gatedRuntime) Create(ctx context.Context, s app.HostSpec) (app.RuntimeHost, error) {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return app.RuntimeHost{}, ctx.Err()
	}
	return g.Runtime.Create(ctx, s)
}

// bootSession opens a bootstrap session with username's password (password-USERNAME).
func (e *env) bootSession(username string) bootSessionBody {
	e.t.Helper()
	var s bootSessionBody
	e.do("POST", "/v1/bootstrap/sessions", "", map[string]string{"username": username, "password": "password-" + username}, 202, &s)
	if s.TaskID == "" || !strings.HasPrefix(s.Secret, app.BootstrapSecretPrefix) || s.StatusURL != "/v1/bootstrap/tasks/"+s.TaskID {
		e.t.Fatalf("bootstrap session %+v", s)
	}
	return s
}

// TestBootstrapSessionSecret: a bootstrap task's status and handoff answer only the holder
// of that session's secret; anything else is the same 401.
func TestBootstrapSessionSecret(t *testing.T) {
	e := newEnv(t, withRuntime(&testenv.Runtime{}))
	_, aliceJWT := e.user("boot-alice", "user")
	e.user("boot-bob", "user")
	alice := e.bootSession("boot-alice")
	bob := e.bootSession("boot-bob")
	seedWaitTask(e, alice.TaskID)
	seedWaitTask(e, bob.TaskID)
	e.waitIdle(alice.HostID)

	// A task of alice's host that no bootstrap session made.
	var rot struct{ Task struct{ ID string } }
	e.do("POST", "/v1/admin/hosts/"+alice.HostID+"/rotate-ssh-password", e.admin, nil, 202, &rot)
	seedWaitTask(e, rot.Task.ID)
	e.waitIdle(alice.HostID)

	forged := alice.Secret[:len(alice.Secret)-2] + "AA"
	if forged == alice.Secret {
		forged = alice.Secret[:len(alice.Secret)-2] + "BB"
	}
	cases := []struct {
		name, task, bearer string
		status             int
	}{
		{"own secret", alice.TaskID, alice.Secret, 200},
		{"no secret", alice.TaskID, "", 401},
		{"another session's secret", alice.TaskID, bob.Secret, 401},
		{"forged secret", alice.TaskID, forged, 401},
		{"secret without its prefix", alice.TaskID, strings.TrimPrefix(alice.Secret, app.BootstrapSecretPrefix), 401},
		{"admin JWT", alice.TaskID, e.admin, 401},
		{"owner's JWT", alice.TaskID, aliceJWT, 401},
		{"a task no bootstrap session made", rot.Task.ID, alice.Secret, 401},
		{"an unknown task", "00000000-0000-0000-0000-000000000000", alice.Secret, 401},
	}
	for _, c := range cases {
		for _, suffix := range []string{"", "/handoff"} {
			t.Run(c.name+" "+strings.TrimPrefix(suffix, "/"), func(t *testing.T) {
				e.t = t
				r := e.raw("GET", "/v1/bootstrap/tasks/"+c.task+suffix, c.bearer, nil)
				if r.Status != c.status {
					t.Fatalf("status %d, want %d: %s", r.Status, c.status, r.Body)
				}
				if c.status == 401 {
					if r.errCode() != "unauthenticated" || !strings.Contains(r.Header.Get("WWW-Authenticate"), "Bearer") {
						t.Fatalf("refusal %s (WWW-Authenticate %q)", r.Body, r.Header.Get("WWW-Authenticate"))
					}
					return
				}
				if suffix == "" {
					var st bootStatusBody
					r.json(t, &st)
					if st.ID != c.task || st.State != app.TaskSucceeded || st.Handof != "/v1/bootstrap/tasks/"+c.task+"/handoff" {
						t.Fatalf("status %+v", st)
					}
				} else {
					var ho app.Handoff
					r.json(t, &ho)
					if !strings.HasPrefix(ho.SSHUser, "boot-alice+") || ho.SSHPort == 0 || ho.SSHHost == "" || ho.SSHPass != "" {
						t.Fatalf("handoff %+v", ho)
					}
				}
			})
		}
	}
	e.t = t

	// The secret dies with the user's right to log in, with a password change (both bump the
	// user's version, as for JWTs), and with age.
	later := []struct {
		name   string
		change func(userID string)
		undo   func()
	}{
		{"session expired", func(string) { e.clock.Add(app.BootstrapSessionTTL + time.Second) },
			func() { e.clock.Add(-app.BootstrapSessionTTL - time.Second) }},
		{"user disabled", func(id string) {
			e.do("PATCH", "/v1/admin/users/"+id, e.admin, map[string]any{"status": "disabled"}, 200, nil)
		}, nil},
		{"password changed", func(id string) {
			e.do("POST", "/v1/admin/users/"+id+"/rotate-password", e.admin, nil, 200, nil)
		}, nil},
	}
	for i, c := range later {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			defer func() { e.t = t }()
			name := "boot-later-" + string(rune('a'+i))
			id, _ := e.user(name, "user")
			s := e.bootSession(name)
			seedWaitTask(e, s.TaskID)
			e.do("GET", s.StatusURL, s.Secret, nil, 200, nil)
			c.change(id)
			for _, suffix := range []string{"", "/handoff"} {
				e.do("GET", s.StatusURL+suffix, s.Secret, nil, 401, nil)
			}
			if c.undo != nil {
				c.undo()
				e.do("GET", s.StatusURL, s.Secret, nil, 200, nil)
			}
		})
	}
}

// TestBootstrapSessionWhileBusy: a second session while the host is being created follows
// the same task with its own secret; the handoff waits for the task to succeed.
func TestBootstrapSessionWhileBusy(t *testing.T) {
	rt := gatedRuntime{Runtime: &testenv.Runtime{}, gate: make(chan struct{})}
	e := newEnv(t, withRuntime(rt))
	e.user("boot-carol", "user")
	first := e.bootSession("boot-carol")
	second := e.bootSession("boot-carol")
	if second.TaskID != first.TaskID || second.HostID != first.HostID {
		t.Fatalf("second session %+v does not follow the first %+v", second, first)
	}
	for _, s := range []bootSessionBody{first, second} {
		var st bootStatusBody
		e.do("GET", s.StatusURL, s.Secret, nil, 200, &st)
		if st.State != app.TaskQueued && st.State != app.TaskRunning {
			t.Fatalf("task in progress is %+v", st)
		}
		r := e.do("GET", s.StatusURL+"/handoff", s.Secret, nil, 409, nil)
		if r.errCode() != "task_not_finished" {
			t.Fatalf("early handoff %s", r.Body)
		}
	}
	close(rt.gate)
	seedWaitTask(e, first.TaskID)
	for _, s := range []bootSessionBody{first, second} {
		e.do("GET", s.StatusURL+"/handoff", s.Secret, nil, 200, nil)
	}
	// Once idle, a new session starts the host again: a new task, a new secret.
	e.waitIdle(first.HostID)
	third := e.bootSession("boot-carol")
	if third.TaskID == first.TaskID {
		t.Fatal("a session on an idle host reused the old task")
	}
	e.do("GET", "/v1/bootstrap/tasks/"+third.TaskID, first.Secret, nil, 401, nil)
	e.do("GET", "/v1/bootstrap/tasks/"+third.TaskID, third.Secret, nil, 200, nil)
}

// TestBootstrapRoles: bootstrap creates or starts a container, so it needs an account that
// may write: a viewer's correct password is 403 and creates and starts nothing; a wrong
// password is the generic 401 whatever the role.
func TestBootstrapRoles(t *testing.T) {
	e := newEnv(t, withRuntime(&testenv.Runtime{}))
	viewerID, _ := e.user("boot-viewer", "viewer")
	hostedViewerID, _ := e.user("boot-viewer2", "viewer")
	hostedViewerHost := e.host(hostedViewerID) // an admin gave this viewer a host
	e.waitIdle(hostedViewerHost)
	e.do("POST", "/v1/admin/hosts/"+hostedViewerHost+"/stop", e.admin, nil, 202, nil)
	e.waitIdle(hostedViewerHost)
	e.user("boot-user", "user")

	cases := []struct {
		name, username, password string
		status                   int
		code                     string
	}{
		{"viewer", "boot-viewer", "password-boot-viewer", 403, "forbidden"},
		{"viewer with a stopped host", "boot-viewer2", "password-boot-viewer2", 403, "forbidden"},
		{"viewer, wrong password", "boot-viewer", "wrong-password", 401, "unauthenticated"},
		{"user, wrong password", "boot-user", "wrong-password", 401, "unauthenticated"},
		{"user", "boot-user", "password-boot-user", 202, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			r := e.raw("POST", "/v1/bootstrap/sessions", "", map[string]string{"username": c.username, "password": c.password})
			if r.Status != c.status {
				t.Fatalf("status %d, want %d: %s", r.Status, c.status, r.Body)
			}
			if c.code != "" && r.errCode() != c.code {
				t.Fatalf("code %q, want %q: %s", r.errCode(), c.code, r.Body)
			}
		})
	}
	e.t = t

	var hosts struct {
		Hosts []struct {
			ID     string        `json:"id"`
			UserID string        `json:"user_id"`
			Status app.HostState `json:"status"`
		} `json:"hosts"`
	}
	e.do("GET", "/v1/admin/hosts", e.admin, nil, 200, &hosts)
	for _, h := range hosts.Hosts {
		if h.UserID == viewerID {
			t.Fatalf("bootstrap created host %s for a viewer", h.ID)
		}
		if h.ID == hostedViewerHost && h.Status != app.HostStopped {
			t.Fatalf("bootstrap moved a viewer's stopped host to %s", h.Status)
		}
	}
	var evs struct {
		Events []app.Event `json:"events"`
	}
	e.do("GET", "/v1/admin/events?user_id="+viewerID, e.admin, nil, 200, &evs)
	denied := false
	for _, ev := range evs.Events {
		denied = denied || (ev.Action == "bootstrap.login" && ev.Result == app.ResultDenied)
	}
	if !denied {
		t.Fatalf("no denied bootstrap.login event for the viewer: %+v", evs.Events)
	}
}

// TestBootstrapShellFormat: ?format=shell answers KEY=VALUE lines, one per field, that the
// served scripts read without a JSON parser; the task's own state is the only state= line.
func TestBootstrapShellFormat(t *testing.T) {
	e := newEnv(t, withRuntime(&testenv.Runtime{}))
	e.user("boot-dave", "user")
	r := e.do("POST", "/v1/bootstrap/sessions?format=shell", "", map[string]string{"username": "boot-dave", "password": "password-boot-dave"}, 202, nil)
	sess := shellLines(t, r)
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") || sess["task_id"] == "" || sess["secret"] == "" ||
		sess["status_url"] != "/v1/bootstrap/tasks/"+sess["task_id"] || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("session answer %q %v", r.Body, r.Header)
	}
	seedWaitTask(e, sess["task_id"])
	st := shellLines(t, e.do("GET", sess["status_url"]+"?format=shell", sess["secret"], nil, 200, nil))
	if st["state"] != string(app.TaskSucceeded) || st["step_state"] != "done" || st["handoff_url"] != sess["status_url"]+"/handoff" {
		t.Fatalf("status %v", st)
	}
	ho := shellLines(t, e.do("GET", st["handoff_url"]+"?format=shell", sess["secret"], nil, 200, nil))
	if !strings.HasPrefix(ho["ssh_user"], "boot-dave+") || ho["ssh_port"] == "" || ho["ssh_host"] == "" || ho["command"] == "" {
		t.Fatalf("handoff %v", ho)
	}
	// Errors keep the one JSON error shape; an unknown format is a 400.
	r = e.do("GET", sess["status_url"]+"?format=shell", "", nil, 401, nil)
	if r.errCode() != "unauthenticated" {
		t.Fatalf("refusal %s", r.Body)
	}
	r = e.do("GET", sess["status_url"]+"?format=yaml", sess["secret"], nil, 400, nil)
	if r.errCode() != "invalid_format" {
		t.Fatalf("unknown format %s", r.Body)
	}
}

// shellLines parses a ?format=shell answer, failing on a line that is not KEY=VALUE or a key
// given twice.
func shellLines(t *testing.T, r resp) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(string(r.Body), "\n"), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t\"'") {
			t.Fatalf("line %q of %q is not KEY=VALUE", line, r.Body)
		}
		if _, dup := out[k]; dup {
			t.Fatalf("key %s twice in %q", k, r.Body)
		}
		out[k] = v
	}
	return out
}

// bootSessionBody and bootStatusBody are the REST answers of a bootstrap session and of its
// task's status: app's values with the addresses the REST door adds.
type bootSessionBody struct {
	app.BootstrapSession
	StatusURL string `json:"status_url"`
}

type bootStatusBody struct {
	app.BootstrapTaskStatus
	Handof string `json:"handoff_url"`
}
