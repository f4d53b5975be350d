package api_test

import (
	"bytes"
	"fmt"
	"mime"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/api"
)

// The OpenAPI description (api/openapi.json, served at GET /v1/openapi.json) is checked three
// ways: every registered route is described and every described operation is registered (with
// the same access level and path parameters); its examples match their schemas; and real
// answers of the test server, success and error alike, match the schema of their route and
// status (a status the description does not list for the route fails too).

const oaDocURL = "mem:///openapi.json"

var oaMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// oaDoc is the parsed description with a compiler over it.
type oaDoc struct {
	root  map[string]any
	mu    sync.Mutex
	comp  *jsonschema.Compiler
	cache map[string]*jsonschema.Schema
}

var (
	oaOnce   sync.Once
	oaShared *oaDoc
	oaErr    error
)

func loadOpenAPI(t *testing.T) *oaDoc {
	t.Helper()
	oaOnce.Do(func() {
		raw := api.OpenAPI()
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			oaErr = fmt.Errorf("openapi.json is not JSON: %w", err)
			return
		}
		root, ok := doc.(map[string]any)
		if !ok {
			oaErr = fmt.Errorf("openapi.json is not an object")
			return
		}
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft2020) // OpenAPI 3.1 schemas are JSON Schema 2020-12
		c.AssertFormat()
		if err := c.AddResource(oaDocURL, doc); err != nil {
			oaErr = err
			return
		}
		oaShared = &oaDoc{root: root, comp: c, cache: map[string]*jsonschema.Schema{}}
	})
	if oaErr != nil {
		t.Fatal(oaErr)
	}
	return oaShared
}

// oaEscape is one JSON-pointer token.
func oaEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// schema compiles the schema at a JSON pointer of the document.
func (d *oaDoc) schema(ptr string) (*jsonschema.Schema, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s, ok := d.cache[ptr]; ok {
		return s, nil
	}
	s, err := d.comp.Compile(oaDocURL + "#" + ptr)
	if err != nil {
		return nil, err
	}
	d.cache[ptr] = s
	return s, nil
}

// lookup follows a JSON pointer (with a leading "/") from the root.
func (d *oaDoc) lookup(ptr string) any {
	var cur any = d.root
	for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[tok]
	}
	return cur
}

// deref follows a local $ref of a response, parameter or request body: the object and its pointer.
func (d *oaDoc) deref(ptr string) (map[string]any, string) {
	for range 8 {
		m, _ := d.lookup(ptr).(map[string]any)
		ref, ok := m["$ref"].(string)
		if !ok {
			return m, ptr
		}
		ptr = strings.TrimPrefix(ref, "#")
	}
	return nil, ptr
}

func (d *oaDoc) paths() map[string]any {
	p, _ := d.root["paths"].(map[string]any)
	return p
}

var oaRouteParam = regexp.MustCompile(`[:*]([A-Za-z0-9_]+)`)

// oaPath is the OpenAPI form of an httprouter path: :id and *path become {id} and {path}.
func oaPath(route string) string { return oaRouteParam.ReplaceAllString(route, "{$1}") }

func TestOpenAPIServed(t *testing.T) {
	e := newEnv(t)
	r := e.raw("GET", "/v1/openapi.json", "", nil)
	if r.Status != 200 {
		t.Fatalf("GET /v1/openapi.json: %d %s", r.Status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
	file, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.Body, file) || !bytes.Equal(api.OpenAPI(), file) {
		t.Error("GET /v1/openapi.json does not serve api/openapi.json as it is in the repo")
	}
	var doc struct {
		OpenAPI string         `json:"openapi"`
		Info    map[string]any `json:"info"`
		Paths   map[string]any `json:"paths"`
	}
	r.json(t, &doc)
	if doc.OpenAPI != "3.1.0" || doc.Info["title"] == nil || len(doc.Paths) == 0 {
		t.Errorf("not an OpenAPI 3.1 document: openapi %q, %d paths", doc.OpenAPI, len(doc.Paths))
	}
}

// TestOpenAPICompleteness compares the description with the routes the server registers.
func TestOpenAPICompleteness(t *testing.T) {
	d := loadOpenAPI(t)
	e := newEnv(t)
	registered := map[string]api.Route{}
	for _, r := range e.api.Routes() {
		registered[strings.ToLower(r.Method)+" "+oaPath(r.Path)] = r
	}
	described := map[string]map[string]any{}
	for p, item := range d.paths() {
		ops, _ := item.(map[string]any)
		for _, m := range oaMethods {
			if op, ok := ops[m].(map[string]any); ok {
				described[m+" "+p] = op
			}
		}
	}
	var missing, extra []string
	for k, r := range registered {
		if _, ok := described[k]; !ok {
			missing = append(missing, fmt.Sprintf("%s %s (access %s)", r.Method, r.Path, r.Access))
		}
	}
	for k := range described {
		if _, ok := registered[k]; !ok {
			extra = append(extra, strings.ToUpper(k[:strings.IndexByte(k, ' ')])+k[strings.IndexByte(k, ' '):])
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("%d registered routes are not described in api/openapi.json:\n  %s", len(missing), strings.Join(missing, "\n  "))
	}
	if len(extra) > 0 {
		t.Errorf("%d operations of api/openapi.json match no registered route:\n  %s", len(extra), strings.Join(extra, "\n  "))
	}

	opIDs := map[string]string{}
	for k, op := range described {
		r, ok := registered[k]
		if !ok {
			continue
		}
		if id, _ := op["operationId"].(string); id == "" {
			t.Errorf("%s: no operationId", k)
		} else if prev, dup := opIDs[id]; dup {
			t.Errorf("%s: operationId %q is also %s", k, id, prev)
		} else {
			opIDs[id] = k
		}
		if acc, _ := op["x-access"].(string); acc != r.Access {
			t.Errorf("%s: x-access %q, but the route is registered as %s", k, acc, r.Access)
		}
		// Path parameters: exactly the placeholders of the path, each required.
		var want, got []string
		for _, m := range oaRouteParam.FindAllStringSubmatch(r.Path, -1) {
			want = append(want, m[1])
		}
		params, _ := op["parameters"].([]any)
		for _, p := range params {
			pm, _ := p.(map[string]any)
			if pm["in"] == "path" {
				got = append(got, fmt.Sprint(pm["name"]))
				if pm["required"] != true {
					t.Errorf("%s: path parameter %v is not required", k, pm["name"])
				}
			}
		}
		sort.Strings(want)
		sort.Strings(got)
		if !slices.Equal(want, got) {
			t.Errorf("%s: path parameters %v, the path has %v", k, got, want)
		}
		// Responses: a success, and the errors every route of its kind can answer.
		responses, _ := op["responses"].(map[string]any)
		hasSuccess := false
		for st := range responses {
			if n, err := strconv.Atoi(st); err == nil && n < 400 {
				hasSuccess = true
			}
		}
		if !hasSuccess && k != "get /_/token/value" {
			t.Errorf("%s: no success response described", k)
		}
		needs := []string{}
		if r.Access != "public" {
			needs = append(needs, "401")
		}
		if r.Access == "admin_read" || r.Access == "admin_write" {
			needs = append(needs, "403")
		}
		if op["requestBody"] != nil {
			needs = append(needs, "400", "413")
		}
		for _, st := range needs {
			if responses[st] == nil {
				t.Errorf("%s: no %s response described", k, st)
			}
		}
	}

	// Every schema compiles (so every $ref resolves), and every JSON answer has one.
	for name := range d.root["components"].(map[string]any)["schemas"].(map[string]any) {
		if _, err := d.schema("/components/schemas/" + oaEscape(name)); err != nil {
			t.Errorf("schema %s: %v", name, err)
		}
	}
	for k := range described {
		method, p, _ := strings.Cut(k, " ")
		base := "/paths/" + oaEscape(p) + "/" + method
		for st := range d.lookup(base + "/responses").(map[string]any) {
			resp, ptr := d.deref(base + "/responses/" + st)
			if resp == nil {
				t.Errorf("%s: response %s does not resolve", k, st)
				continue
			}
			content, _ := resp["content"].(map[string]any)
			if _, ok := content["application/json"]; ok {
				if _, err := d.schema(ptr + "/content/application~1json/schema"); err != nil {
					t.Errorf("%s: response %s schema: %v", k, st, err)
				}
			}
		}
		if body, ptr := d.deref(base + "/requestBody"); body != nil {
			if _, err := d.schema(ptr + "/content/application~1json/schema"); err != nil {
				t.Errorf("%s: request body schema: %v", k, err)
			}
		}
	}
}

// TestOpenAPIExamples validates every example of a JSON request body or answer (the API
// reference's among them) against its schema.
func TestOpenAPIExamples(t *testing.T) {
	d := loadOpenAPI(t)
	n := 0
	var walk func(ptr string, v any)
	walk = func(ptr string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if strings.HasSuffix(ptr, "/application~1json") && x["schema"] != nil {
				sch, err := d.schema(ptr + "/schema")
				if err != nil {
					t.Errorf("%s: %v", ptr, err)
					return
				}
				check := func(where string, val any) {
					n++
					if err := sch.Validate(val); err != nil {
						t.Errorf("example %s does not match its schema: %v", where, err)
					}
				}
				if ex, ok := x["example"]; ok {
					check(ptr+"/example", ex)
				}
				if exs, ok := x["examples"].(map[string]any); ok {
					for name, ex := range exs {
						check(ptr+"/examples/"+name, ex.(map[string]any)["value"])
					}
				}
				return
			}
			for k, c := range x {
				walk(ptr+"/"+oaEscape(k), c)
			}
		case []any:
			for i, c := range x {
				walk(ptr+"/"+strconv.Itoa(i), c)
			}
		}
	}
	walk("", d.root)
	if n < 20 {
		t.Errorf("only %d examples checked", n)
	}
	t.Logf("checked %d examples", n)
}

// oaChecker validates real answers against the description and counts what it saw.
type oaChecker struct {
	d    *oaDoc
	seen map[string]bool // "METHOD path status"
}

// check validates one answer of route (httprouter form) against the description.
func (c *oaChecker) check(t *testing.T, method, route string, r resp) {
	t.Helper()
	p := oaPath(route)
	m := strings.ToLower(method)
	base := "/paths/" + oaEscape(p) + "/" + m
	if c.d.lookup(base) == nil {
		t.Errorf("%s %s: not described", method, p)
		return
	}
	st := strconv.Itoa(r.Status)
	resp, ptr := c.d.deref(base + "/responses/" + st)
	if resp == nil {
		t.Errorf("%s %s answered %d, a status the description does not list; body %s", method, p, r.Status, oaShort(r.Body))
		return
	}
	c.seen[method+" "+p+" "+st] = true
	content, _ := resp["content"].(map[string]any)
	if method == http.MethodHead || r.Status == http.StatusNoContent || len(content) == 0 {
		if r.Status == http.StatusNoContent && len(r.Body) > 0 {
			t.Errorf("%s %s: 204 with a body %s", method, p, r.Body)
		}
		return
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if _, ok := content[ct]; !ok {
		if _, any := content["*/*"]; !any {
			t.Errorf("%s %s %d: Content-Type %q is not described", method, p, r.Status, ct)
		}
		return
	}
	if ct != "application/json" {
		return
	}
	sch, err := c.d.schema(ptr + "/content/application~1json/schema")
	if err != nil {
		t.Errorf("%s %s %d: %v", method, p, r.Status, err)
		return
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(r.Body))
	if err != nil {
		t.Errorf("%s %s %d: body is not JSON: %v; %s", method, p, r.Status, err, r.Body)
		return
	}
	if err := sch.Validate(v); err != nil {
		t.Errorf("%s %s %d: the answer does not match the description: %v\nbody %s", method, p, r.Status, err, oaShort(r.Body))
	}
}

func oaShort(b []byte) string {
	if len(b) > 400 {
		return string(b[:400]) + "…"
	}
	return string(b)
}

// TestOpenAPIResponses sends the authorization matrix's request for every route as an admin,
// a user, a viewer, a read-only token and no one, then the requests of richer states and of
// each kind of error, and validates every answer.
func TestOpenAPIResponses(t *testing.T) {
	d := loadOpenAPI(t)
	c := &oaChecker{d: d, seen: map[string]bool{}}
	f := newMatrixFixture(t)
	e := f.e
	_, _, readTok := f.newToken(f.userJWT, false)

	// Richer states first: host A bound to a WireGuard egress IP, a token used.
	var wg struct{ ID string }
	e.do("POST", "/v1/admin/egress-ips", e.admin, map[string]any{"label": "oa-wg", "ip_address": "203.0.113.77", "tunnel_type": "wireguard",
		"wg_endpoint": "vpn.example.com:51820", "wg_public_key": "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=", "wg_allowed_ips": "0.0.0.0/0",
		"wg_peer_address": "10.0.0.2/32", "wg_preshared_key": "FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE="}, 201, &wg)
	var bind struct{ ID string }
	e.do("POST", "/v1/admin/bindings", e.admin, map[string]any{"host_id": f.hostA, "egress_ip_id": wg.ID}, 201, &bind)

	callers := []*mxCaller{
		{name: "admin", valid: true, role: "admin", userID: e.adminID, write: true, password: mxAdminPassword,
			bearer: func() string { return e.admin }, owner: func() string { return e.admin },
			fresh: func() string { return e.login("admin", mxAdminPassword) }},
		{name: "user", valid: true, role: "user", userID: f.userID, write: true, password: mxPW(mxUser),
			bearer: func() string { return f.userJWT }, owner: func() string { return f.userJWT },
			fresh: func() string { return e.login(mxUser, mxPW(mxUser)) }},
		{name: "viewer", valid: true, role: "viewer", userID: f.viewerID, write: true, password: mxPW(mxViewer),
			bearer: func() string { return f.viewerJWT }, owner: func() string { return f.viewerJWT },
			fresh: func() string { return e.login(mxViewer, mxPW(mxViewer)) }},
		{name: "read-only token", valid: true, role: "user", userID: f.userID, token: true, password: mxPW(mxUser),
			bearer: func() string { return readTok }, owner: func() string { return f.userJWT }},
		{name: "anonymous", password: mxPW(mxUser), bearer: func() string { return "" }, owner: func() string { return f.userJWT }},
	}
	// The user's change-password row kills the read-only token: mint another.
	f.afterConsume = append(f.afterConsume, func() { _, _, readTok = f.newToken(f.userJWT, false) })

	specs := f.specs()
	rows := 0
	for _, r := range e.api.Routes() {
		s, ok := specs[r.Method+" "+r.Path]
		if !ok {
			t.Errorf("route %s %s has no matrix request to validate", r.Method, r.Path)
			continue
		}
		for _, cl := range callers {
			if r.Access == mxPublic && cl.name != "anonymous" {
				continue
			}
			prev := e.t
			e.t = t
			path, body := s.req(cl)
			bearer := cl.bearer()
			if s.consumes && cl.fresh != nil {
				bearer = cl.fresh()
			}
			res := e.raw(r.Method, path, bearer, body)
			if s.consumes {
				f.relogin()
				for _, fn := range f.afterConsume {
					fn()
				}
			}
			e.t = prev
			rows++
			c.check(t, r.Method, r.Path, res)
		}
	}

	// Richer answers and every kind of error.
	e.waitIdle(f.hostA)
	missingID := "00000000-0000-4000-8000-000000000000"
	big := `{"username":"` + strings.Repeat("x", api.MaxBodyBytes) + `"}`
	var boot struct {
		TaskID string `json:"task_id"`
		Secret string `json:"secret"`
	}
	extra := []struct {
		method, route, path, bearer string
		body                        any
		want                        int
	}{
		{"GET", "/v1/admin/hosts/:id", "/v1/admin/hosts/" + f.hostA, e.admin, nil, 200},
		{"GET", "/v1/user/hosts", "/v1/user/hosts", f.userJWT, nil, 200},
		{"GET", "/v1/admin/egress-ips/:id", "/v1/admin/egress-ips/" + wg.ID, e.admin, nil, 200},
		{"GET", "/v1/admin/egress-ips", "/v1/admin/egress-ips", e.admin, nil, 200},
		{"GET", "/v1/admin/events", "/v1/admin/events?limit=2", e.admin, nil, 200},
		{"GET", "/v1/admin/events", "/v1/admin/events?type=user.create&since=2020-01-01T00:00:00Z", e.admin, nil, 200},
		{"GET", "/v1/admin/tasks", "/v1/admin/tasks?host_id=" + f.hostA + "&limit=5", e.admin, nil, 200},
		{"GET", "/v1/admin/dashboard/stats", "/v1/admin/dashboard/stats", e.admin, nil, 200},
		{"GET", "/v1/tokens", "/v1/tokens", f.userJWT, nil, 200},
		{"GET", "/v1/admin/tokens", "/v1/admin/tokens?user_id=" + f.userID, e.admin, nil, 200},
		{"GET", "/_/token", "/_/token", f.userJWT, nil, 200},
		{"POST", "/v1/tokens", "/v1/tokens", f.userJWT, map[string]any{"name": "oa-never", "expires_at": "never"}, 201},
		{"POST", "/v1/admin/users", "/v1/admin/users", e.admin,
			map[string]any{"username": "oa-expiring", "password": "password-oa", "expires_at": "2099-12-31T23:59:59Z", "role": "viewer"}, 201},
		{"POST", "/v1/admin/hosts/:id/rotate-ssh-password", "/v1/admin/hosts/" + f.hostA + "/rotate-ssh-password", e.admin, nil, 202},
		// 400
		{"POST", "/v1/admin/users", "/v1/admin/users", e.admin, `{"username":`, 400},
		{"POST", "/v1/admin/users", "/v1/admin/users", e.admin, map[string]any{"username": "oa-x", "password": "password-x", "nmae": 1}, 400},
		{"POST", "/v1/admin/users", "/v1/admin/users", e.admin, map[string]any{"username": 7}, 400},
		{"POST", "/v1/tokens", "/v1/tokens", f.userJWT, "", 400},
		{"GET", "/v1/admin/events", "/v1/admin/events?limit=0", e.admin, nil, 400},
		{"GET", "/v1/admin/events", "/v1/admin/events?since=yesterday", e.admin, nil, 400},
		{"GET", "/v1/admin/tasks", "/v1/admin/tasks?limit=x", e.admin, nil, 400},
		{"DELETE", "/v1/admin/hosts/:id", "/v1/admin/hosts/" + f.hostA + "?keep_home=maybe", e.admin, nil, 400},
		{"POST", "/v1/auth/logout", "/v1/auth/logout", readTok, nil, 400},
		{"GET", "/v1/bootstrap/tasks/:id", "/v1/bootstrap/tasks/" + f.taskA + "?format=yaml", "", nil, 400},
		// 401
		{"POST", "/v1/auth/login", "/v1/auth/login", "", map[string]string{"username": mxUser, "password": "wrong-password"}, 401},
		{"GET", "/v1/admin/users", "/v1/admin/users", "garbage", nil, 401},
		{"POST", "/v1/entry/:shortId/auth", "/v1/entry/" + f.shortA + "/auth", "", map[string]string{"password": "wrong-password"}, 401},
		// 403
		{"POST", "/v1/admin/users", "/v1/admin/users", f.viewerJWT, map[string]any{"username": "oa-v", "password": "password-v"}, 403},
		{"POST", "/v1/user/ssh-keys/generate", "/v1/user/ssh-keys/generate", readTok, nil, 403},
		// 404
		{"GET", "/v1/admin/users/:id", "/v1/admin/users/" + missingID, e.admin, nil, 404},
		{"GET", "/v1/admin/hosts/:id", "/v1/admin/hosts/" + missingID, e.admin, nil, 404},
		{"GET", "/v1/admin/tasks/:id", "/v1/admin/tasks/" + missingID, e.admin, nil, 404},
		{"DELETE", "/v1/admin/egress-ips/:id", "/v1/admin/egress-ips/" + missingID, e.admin, nil, 404},
		{"GET", "/v1/user/hosts/:id", "/v1/user/hosts/" + f.hostA, f.otherJWT, nil, 404},
		{"GET", "/entry/:shortId", "/entry/INVALID", "", nil, 404},
		// 409
		{"POST", "/v1/admin/users", "/v1/admin/users", e.admin, map[string]any{"username": mxUser, "password": "password-dup"}, 409},
		{"DELETE", "/v1/admin/egress-ips/:id", "/v1/admin/egress-ips/" + wg.ID, e.admin, nil, 409},
		{"POST", "/v1/admin/bindings", "/v1/admin/bindings", e.admin, map[string]any{"host_id": f.hostA, "egress_ip_id": f.egress}, 409},
		{"PATCH", "/v1/admin/users/:id", "/v1/admin/users/" + e.adminID, e.admin, map[string]any{"status": "disabled"}, 409},
		{"DELETE", "/v1/admin/users/:id", "/v1/admin/users/" + e.adminID, e.admin, nil, 409},
		// 413
		{"POST", "/v1/admin/users", "/v1/admin/users", e.admin, big, 413},
		// 422
		{"POST", "/v1/admin/users", "/v1/admin/users", e.admin, map[string]any{"username": "oa-short", "password": "short"}, 422},
		{"POST", "/v1/admin/users", "/v1/admin/users", e.admin, map[string]any{"username": "x", "password": "password-x"}, 422},
		{"PUT", "/v1/admin/users/:id/expiry", "/v1/admin/users/" + f.userID + "/expiry", e.admin, map[string]any{}, 422},
		{"POST", "/v1/user/ssh-keys", "/v1/user/ssh-keys", f.userJWT, map[string]any{"public_key": "ssh-ed25519 nonsense"}, 422},
		{"POST", "/v1/admin/egress-ips", "/v1/admin/egress-ips", e.admin, map[string]any{"label": "oa-bad", "tunnel_type": "carrier-pigeon"}, 422},
		{"POST", "/v1/admin/hosts", "/v1/admin/hosts", e.admin, map[string]any{"user_id": f.spareID, "cpu": 1000}, 422},
		{"POST", "/v1/tokens", "/v1/tokens", f.userJWT, map[string]any{"name": "oa-bad-expiry", "expires_in_days": 3}, 422},
		{"POST", "/v1/admin/bindings", "/v1/admin/bindings", e.admin, map[string]any{"host_id": f.hostA}, 422},
		// 410
		{"GET", "/_/token/value", "/_/token/value?name=oa-never", f.userJWT, nil, 410},
	}
	for _, x := range extra {
		res := e.raw(x.method, x.path, x.bearer, x.body)
		if res.Status != x.want {
			t.Errorf("%s %s: status %d, want %d; body %s", x.method, x.path, res.Status, x.want, res.Body)
		}
		rows++
		c.check(t, x.method, x.route, res)
	}

	// The bootstrap flow with its secret, in JSON and in shell lines.
	res := e.raw("POST", "/v1/bootstrap/sessions", "", map[string]string{"username": mxBoot, "password": mxPW(mxBoot)})
	c.check(t, "POST", "/v1/bootstrap/sessions", res)
	res.json(t, &boot)
	for _, q := range []string{"", "?format=shell"} {
		for _, route := range []string{"/v1/bootstrap/tasks/:id", "/v1/bootstrap/tasks/:id/handoff"} {
			path := strings.Replace(route, ":id", boot.TaskID, 1) + q
			c.check(t, "GET", route, e.raw("GET", path, boot.Secret, nil))
			rows++
		}
	}
	c.check(t, "POST", "/v1/entry/:shortId/auth", e.raw("POST", "/v1/entry/"+f.shortA+"/auth?format=shell", "", map[string]string{"password": mxPW(mxUser)}))
	// Login throttling: 429 after repeated failures.
	var last resp
	for range 8 {
		last = e.raw("POST", "/v1/auth/login", "", map[string]string{"username": mxOther, "password": "wrong-password"})
	}
	if last.Status != http.StatusTooManyRequests {
		t.Errorf("repeated failed logins: status %d, want 429", last.Status)
	}
	c.check(t, "POST", "/v1/auth/login", last)
	rows += 3

	statuses := map[string]int{}
	for k := range c.seen {
		statuses[k[strings.LastIndexByte(k, ' ')+1:]]++
	}
	for _, st := range []string{"200", "201", "202", "204", "400", "401", "403", "404", "409", "410", "413", "422", "429"} {
		if statuses[st] == 0 {
			t.Errorf("no answer with status %s was validated", st)
		}
	}
	t.Logf("validated %d answers: %d distinct route × status pairs %v", rows, len(c.seen), statuses)
}
