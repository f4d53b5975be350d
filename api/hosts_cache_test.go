package api_test

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// The full host listing is cached until the next write to the store: every write must show,
// and the cached answer must still be refused to whoever may not list hosts.
func TestHostListCacheFollowsWrites(t *testing.T) {
	e := newEnv(t)
	list := func() ([]app.HostView, []byte) {
		t.Helper()
		var out struct {
			Hosts []app.HostView `json:"hosts"`
		}
		r := e.do("GET", "/v1/admin/hosts", e.admin, nil, 200, &out)
		return out.Hosts, r.Body
	}
	same := func() {
		t.Helper()
		hs, body := list()
		for _, h := range hs { // each entry is what the single-host route answers now
			var one app.HostView
			e.do("GET", "/v1/admin/hosts/"+h.ID, e.admin, nil, 200, &one)
			if !reflect.DeepEqual(h, one) {
				t.Errorf("listed %+v\nbut GET answers %+v", h, one)
			}
		}
		if _, again := list(); !bytes.Equal(body, again) {
			t.Errorf("two listings without a write differ:\n%s\n%s", body, again)
		}
	}

	if hs, _ := list(); len(hs) != 0 {
		t.Fatalf("fresh server lists %d hosts", len(hs))
	}
	uid, userJWT := e.user("cache-alice", "user")
	_, viewerJWT := e.user("cache-victor", "viewer")
	h1 := e.host(uid)
	e.waitIdle(h1)
	same()
	h2 := e.host(uid)
	byID := func() map[string]app.HostView {
		t.Helper()
		hs, _ := list()
		m := map[string]app.HostView{}
		for _, h := range hs {
			m[h.ID] = h
		}
		return m
	}
	if m := byID(); len(m) != 2 || m[h2].ID != h2 || m[h1].Username != "cache-alice" {
		t.Fatalf("after a second host: %+v", m)
	}
	e.waitIdle(h2)
	same()

	// An egress binding shows at once.
	var eg struct{ ID string }
	e.do("POST", "/v1/admin/egress-ips", e.admin, map[string]any{"label": "cache-eg", "ip_address": "203.0.113.9",
		"tunnel_type": "proxy", "provider": "manual",
		"proxy_config": map[string]any{"type": "socks", "server": "203.0.113.9", "server_port": 1080}}, 201, &eg)
	e.do("POST", "/v1/admin/bindings", e.admin, map[string]any{"host_id": h2, "egress_ip_id": eg.ID}, 201, nil)
	if m := byID(); m[h2].Egress == nil || m[h2].Egress.ID != eg.ID || m[h2].Egress.Label != "cache-eg" || m[h1].Egress != nil {
		t.Fatalf("after binding %s: %+v / %+v", h2, m[h1].Egress, m[h2].Egress)
	}
	same()

	// Deleting a host shows once the delete is queued.
	e.do("DELETE", "/v1/admin/hosts/"+h1, e.admin, nil, 202, nil)
	if h, ok := byID()[h1]; ok && h.DesiredState != app.HostDeleted {
		t.Errorf("deleted host listed with desired state %q", h.DesiredState)
	}

	// Authorization is checked on every request, cached or not.
	list()
	if r := e.raw("GET", "/v1/admin/hosts", userJWT, nil); r.Status != 403 {
		t.Errorf("a user listing all hosts: status %d", r.Status)
	}
	if r := e.raw("GET", "/v1/admin/hosts", "", nil); r.Status != 401 {
		t.Errorf("anonymous listing: status %d", r.Status)
	}
	var vs struct {
		Hosts []app.HostView `json:"hosts"`
	}
	e.do("GET", "/v1/admin/hosts", viewerJWT, nil, 200, &vs)
	if got, _ := list(); !reflect.DeepEqual(vs.Hosts, got) {
		t.Errorf("viewer sees %+v, admin %+v", vs.Hosts, got)
	}
}
