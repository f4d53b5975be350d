package api_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/api"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/testenv"
)

// ---- a websocket client small enough to read an RFB banner ----

// wsConn is the client side of an upgraded connection.
type wsConn struct {
	net.Conn
	br *bufio.Reader
}

// wsDial sends a websocket upgrade for rawURL with extra headers. It returns the response;
// the connection only when the server switched protocols.
func wsDial(t *testing.T, rawURL string, hdr http.Header) (*wsConn, *http.Response) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	req, _ := http.NewRequest("GET", rawURL, nil)
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Sec-WebSocket-Key", base64.StdEncoding.EncodeToString(key))
	req.Header.Set("Sec-WebSocket-Version", "13")
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := req.Write(c); err != nil {
		c.Close()
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, req)
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(res.Body)
		res.Body = io.NopCloser(strings.NewReader(string(body)))
		c.Close()
		return nil, res
	}
	want := wsAccept(req.Header.Get("Sec-WebSocket-Key"))
	if got := res.Header.Get("Sec-WebSocket-Accept"); got != want {
		c.Close()
		t.Fatalf("Sec-WebSocket-Accept %q, want %q", got, want)
	}
	ws := &wsConn{Conn: c, br: br}
	t.Cleanup(func() { ws.Close() })
	return ws, res
}

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// readFrame reads one frame (server frames are unmasked; masked ones are unmasked too).
func wsReadFrame(br *bufio.Reader) (opcode byte, payload []byte, err error) {
	var h [2]byte
	if _, err = io.ReadFull(br, h[:]); err != nil {
		return 0, nil, err
	}
	opcode = h[0] & 0x0f
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err = io.ReadFull(br, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err = io.ReadFull(br, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 1<<20 {
		return 0, nil, fmt.Errorf("frame of %d bytes", n)
	}
	var mask [4]byte
	masked := h[1]&0x80 != 0
	if masked {
		if _, err = io.ReadFull(br, mask[:]); err != nil {
			return 0, nil, err
		}
	}
	payload = make([]byte, n)
	if _, err = io.ReadFull(br, payload); err != nil {
		return 0, nil, err
	}
	if masked {
		for i := range payload {
			payload[i] ^= mask[i%4]
		}
	}
	return opcode, payload, nil
}

// readBanner reads data frames until it has the 12-byte RFB protocol version.
func (c *wsConn) readBanner(t *testing.T) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var got []byte
	for len(got) < 12 {
		op, p, err := wsReadFrame(c.br)
		if err != nil {
			t.Fatalf("reading the RFB banner (have %q): %v", got, err)
		}
		switch op {
		case 0x0, 0x1, 0x2:
			got = append(got, p...)
		case 0x8:
			t.Fatalf("websocket closed before the RFB banner (have %q, close payload %q)", got, p)
		}
	}
	return string(got[:12])
}

// ---- a fake engine and a fake desktop (no Docker, no root) ----

// newFakeRuntime runs "containers" as map entries; each start gets a fresh pid, far above
// real ones.
func newFakeRuntime() *testenv.Runtime { return &testenv.Runtime{PidBase: 4000000} }

// fakeDesktop stands in for websockify/noVNC inside a container: it records what reached it,
// serves files, and answers /websockify with an RFB banner.
type fakeDesktop struct {
	ln   net.Listener
	mu   sync.Mutex
	seen []*http.Request
}

func newFakeDesktop(t *testing.T) *fakeDesktop {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &fakeDesktop{ln: ln}
	srv := &http.Server{Handler: http.HandlerFunc(d.serve)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return d
}

func (d *fakeDesktop) serve(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	d.seen = append(d.seen, r.Clone(context.Background()))
	d.mu.Unlock()
	if r.URL.Path == "/websockify" {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			wsAccept(r.Header.Get("Sec-WebSocket-Key")))
		brw.Write([]byte{0x82, 12})
		brw.WriteString("RFB 003.008\n")
		brw.Flush()
		_, _ = io.Copy(io.Discard, brw) // until the client goes away
		return
	}
	// The container must not be able to set cookies on the control plane's origin.
	http.SetCookie(w, &http.Cookie{Name: "planted", Value: "x", Path: "/"})
	// Nor widen a service worker's scope to the whole origin.
	w.Header().Set("Service-Worker-Allowed", "/")
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprintf(w, "desktop file %s", r.URL.Path)
}

func (d *fakeDesktop) last(t *testing.T) *http.Request {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.seen) == 0 {
		t.Fatal("no request reached the desktop")
	}
	return d.seen[len(d.seen)-1]
}

func (d *fakeDesktop) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.seen)
}

// fakeNetns dials the fake desktop for any pid the fake runtime handed out, and records
// what the proxy asked for.
type fakeNetns struct {
	desk *fakeDesktop
	mu   sync.Mutex
	pids []int
	addr []string
	fail error
}

func (n *fakeNetns) dial(ctx context.Context, pid int, network, addr string) (net.Conn, error) {
	n.mu.Lock()
	n.pids, n.addr = append(n.pids, pid), append(n.addr, addr)
	fail := n.fail
	n.mu.Unlock()
	if fail != nil {
		return nil, fail
	}
	var d net.Dialer
	return d.DialContext(ctx, network, n.desk.ln.Addr().String())
}

func (n *fakeNetns) lastDial(t *testing.T) (int, string) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.pids) == 0 {
		t.Fatal("the proxy dialed nothing")
	}
	return n.pids[len(n.pids)-1], n.addr[len(n.addr)-1]
}

// vncFake is an env whose engine and desktop are fakes (newFakeRuntime, fakeNetns).
func vncFake(t *testing.T, opts ...envOption) (*env, *testenv.Runtime, *fakeNetns) {
	t.Helper()
	rt := newFakeRuntime()
	ns := &fakeNetns{desk: newFakeDesktop(t)}
	e := newEnv(t, append([]envOption{withRuntime(rt), withVNCDial(ns.dial)}, opts...)...)
	return e, rt, ns
}

// aliceDesktop adds the user alice with an idle host: her id and token, the host, and its
// desktop's prefix on the user door.
func (e *env) aliceDesktop() (aliceID, alice, hostA, prefix string) {
	e.t.Helper()
	aliceID, alice = e.user("alice", "user")
	hostA = e.host(aliceID)
	e.waitIdle(hostA)
	return aliceID, alice, hostA, "/v1/user/hosts/" + hostA + "/vnc"
}

func withVNCDial(d api.VNCDialer) envOption {
	return func(_ *app.Config, _ *app.Deps, c *api.Config) { c.VNCDial = d }
}

// vncGet sends a GET with extra headers and does not follow redirects.
func (e *env) vncGet(path string, hdr http.Header) resp {
	e.t.Helper()
	req, err := http.NewRequest("GET", e.srv.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	cl := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := cl.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{Status: res.StatusCode, Header: res.Header, Body: b}
}

func vncCookie(t *testing.T, r resp) *http.Cookie {
	t.Helper()
	for _, c := range (&http.Response{Header: r.Header}).Cookies() {
		if c.Name == api.VNCCookieName {
			return c
		}
	}
	t.Fatalf("no %s cookie in %v", api.VNCCookieName, r.Header["Set-Cookie"])
	return nil
}

func bearerHdr(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func cookieHdr(c *http.Cookie) http.Header {
	return http.Header{"Cookie": {(&http.Cookie{Name: c.Name, Value: c.Value}).String()}}
}

func wantErr(t *testing.T, r resp, status int, code string) {
	t.Helper()
	if r.Status != status || r.errCode() != code {
		t.Fatalf("status %d code %q, want %d %q; body %s", r.Status, r.errCode(), status, code, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("error Content-Type %q", ct)
	}
}

// TestVNCProxyFake drives the whole proxy (authentication, authorization, path rewriting,
// the ticket cookie, the websocket, error mapping) against a fake engine and desktop, so it
// runs anywhere.
func TestVNCProxyFake(t *testing.T) {
	e, rt, ns := vncFake(t)
	aliceID, alice := e.user("alice", "user")
	bobID, bob := e.user("bob", "user")
	_, viewer := e.user("vera", "viewer")
	hostA := e.host(aliceID)
	e.waitIdle(hostA)
	hostB := e.host(bobID)
	e.waitIdle(hostB)
	userA := "/v1/user/hosts/" + hostA + "/vnc"
	adminA := "/v1/admin/hosts/" + hostA + "/vnc"

	t.Run("bearer proxies with the prefix stripped and credentials withheld", func(t *testing.T) {
		e.t = t
		r := e.vncGet(userA+"/app/ui.js?x=1", http.Header{
			"Authorization": {"Bearer " + alice}, "Cookie": {"other=secret"}})
		if r.Status != 200 || string(r.Body) != "desktop file /app/ui.js" {
			t.Fatalf("status %d body %s", r.Status, r.Body)
		}
		up := ns.desk.last(t)
		if up.URL.Path != "/app/ui.js" || up.URL.RawQuery != "x=1" {
			t.Errorf("upstream got %s?%s", up.URL.Path, up.URL.RawQuery)
		}
		if up.Header.Get("Authorization") != "" || up.Header.Get("Cookie") != "" {
			t.Errorf("credentials reached the container: %v", up.Header)
		}
		if up.Host != "127.0.0.1:6901" {
			t.Errorf("upstream Host %q", up.Host)
		}
		if len(r.Header["Set-Cookie"]) != 0 {
			t.Errorf("the container set a cookie through the proxy: %v", r.Header["Set-Cookie"])
		}
		pid, addr := ns.lastDial(t)
		if want := inspectFake(t, rt, hostA).Pid; pid != want || addr != "127.0.0.1:6901" {
			t.Errorf("dialed %s in pid %d, want 127.0.0.1:6901 in %d", addr, pid, want)
		}
		// The admin door reaches the same desktop.
		if r := e.vncGet(adminA+"/vnc.html?path=x", bearerHdr(e.admin)); r.Status != 200 {
			t.Fatalf("admin door: %d %s", r.Status, r.Body)
		}
	})

	var ticket *http.Cookie
	var sockPath string // the websocket path the ?token= open put in the page's address
	t.Run("token parameter becomes a host-scoped cookie", func(t *testing.T) {
		e.t = t
		r := e.vncGet(userA+"/vnc.html?autoconnect=1&token="+url.QueryEscape(alice), nil)
		if r.Status != http.StatusSeeOther {
			t.Fatalf("status %d, want 303; body %s", r.Status, r.Body)
		}
		loc, err := url.Parse(r.Header.Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		q := loc.Query()
		sockPath = q.Get("path")
		key := strings.TrimPrefix(sockPath, strings.TrimPrefix(userA, "/")+"/websockify?k=")
		if loc.Path != userA+"/vnc.html" || q.Has("token") || q.Get("autoconnect") != "1" ||
			key == sockPath || len(key) < 20 || strings.Contains(sockPath, alice) {
			t.Fatalf("redirect to %s", loc)
		}
		ticket = vncCookie(t, r)
		if ticket.Path != userA+"/" || !ticket.HttpOnly || ticket.SameSite != http.SameSiteLaxMode || ticket.MaxAge <= 0 {
			t.Fatalf("cookie %+v", ticket)
		}
		if strings.Contains(ticket.Value, alice) {
			t.Fatal("the cookie carries the API credential itself")
		}
		// The page and its files load on the cookie alone.
		before := ns.desk.count()
		h := cookieHdr(ticket)
		h.Set("Referer", e.srv.URL+loc.RequestURI())
		r = e.vncGet(loc.RequestURI(), h)
		if r.Status != 200 {
			t.Fatalf("page on the cookie: %d %s", r.Status, r.Body)
		}
		up := ns.desk.last(t)
		if up.URL.Query().Has("token") || up.Header.Get("Cookie") != "" || up.Header.Get("Referer") != "" || ns.desk.count() != before+1 {
			t.Fatalf("upstream saw %s with headers %v", up.URL, up.Header)
		}
		// Opened on the cookie alone (as a page elsewhere on this origin could open it), the
		// page's address gets the websocket path without a key.
		r = e.vncGet(userA+"/vnc.html", cookieHdr(ticket))
		if l, _ := url.Parse(r.Header.Get("Location")); r.Status != http.StatusSeeOther ||
			l.Query().Get("path") != strings.TrimPrefix(userA, "/")+"/websockify" {
			t.Fatalf("cookie-only open: %d to %s", r.Status, r.Header.Get("Location"))
		}
		// A ticket is not an API credential.
		if r := e.raw("GET", "/v1/auth/me", ticket.Value, nil); r.Status != 401 {
			t.Fatalf("ticket as API bearer: %d", r.Status)
		}
	})

	t.Run("websocket through the cookie gets the RFB banner and is audited", func(t *testing.T) {
		e.t = t
		ws, res := wsDial(t, e.srv.URL+"/"+sockPath, cookieHdr(ticket))
		if ws == nil {
			b, _ := io.ReadAll(res.Body)
			t.Fatalf("upgrade refused: %d %s", res.StatusCode, b)
		}
		if up := ns.desk.last(t); up.URL.RawQuery != "" {
			t.Fatalf("the socket key reached the container: %s", up.URL)
		}
		if got := ws.readBanner(t); got != "RFB 003.008\n" {
			t.Fatalf("banner %q", got)
		}
		var page struct{ Events []app.Event }
		e.do("GET", "/v1/admin/events?type=host.vnc&host_id="+hostA, e.admin, nil, 200, &page)
		if len(page.Events) == 0 || page.Events[0].ActorID != aliceID || page.Events[0].Result != app.ResultSuccess {
			t.Fatalf("host.vnc audit events: %+v", page.Events)
		}
		// noVNC 1.5+ resolves the injected path against the page: the doubled prefix works too.
		ws, res = wsDial(t, e.srv.URL+userA+userA+"/websockify", bearerHdr(alice))
		if ws == nil || ns.desk.last(t).URL.Path != "/websockify" {
			t.Fatalf("doubled prefix: %v", res.Status)
		}
		// Another site's page cannot use the visitor's cookie.
		h := cookieHdr(ticket)
		h.Set("Origin", "http://evil.example")
		ws, res = wsDial(t, e.srv.URL+"/"+sockPath, h)
		if ws != nil || res.StatusCode != 403 {
			t.Fatalf("cross-origin websocket: %d", res.StatusCode)
		}
		// Nor can a page another container serves on this origin: the browser attaches the
		// cookie, but the page does not know the socket key (nor a wrong or other host's one).
		for _, path := range []string{userA + "/websockify", userA + "/websockify?k=", userA + "/websockify?k=AAAAAAAAAAAAAAAAAAAAAAAA"} {
			h := cookieHdr(ticket)
			h.Set("Origin", e.srv.URL)
			ws, res = wsDial(t, e.srv.URL+path, h)
			if ws != nil || res.StatusCode != 403 {
				t.Fatalf("websocket on the cookie without its key (%s): %d", path, res.StatusCode)
			}
		}
	})

	t.Run("a ticket is bound to its host, door and session", func(t *testing.T) {
		e.t = t
		wantErr(t, e.vncGet("/v1/user/hosts/"+hostB+"/vnc/vnc.html", cookieHdr(ticket)), 401, "unauthenticated")
		wantErr(t, e.vncGet(adminA+"/vnc.html", cookieHdr(ticket)), 401, "unauthenticated")
		// Logging the session out kills its tickets; the stale cookie is cleared.
		sess := e.login("alice", "password-alice")
		r := e.vncGet(userA+"/vnc.html?path=p&token="+sess, nil)
		c := vncCookie(t, r)
		if r := e.vncGet(userA+"/vnc.html?path=p", cookieHdr(c)); r.Status != 200 {
			t.Fatalf("fresh ticket: %d %s", r.Status, r.Body)
		}
		e.do("POST", "/v1/auth/logout", sess, nil, 204, nil)
		r = e.vncGet(userA+"/vnc.html?path=p", cookieHdr(c))
		wantErr(t, r, 401, "unauthenticated")
		if gone := vncCookie(t, r); gone.MaxAge >= 0 {
			t.Fatalf("stale cookie not cleared: %+v", gone)
		}
		// An expired ticket is refused; one past half its life is renewed.
		r = e.vncGet(userA+"/vnc.html?path=p&token="+alice, nil)
		c = vncCookie(t, r)
		e.clock.Add(app.VNCTicketTTL * 3 / 4)
		r = e.vncGet(userA+"/vnc.html?path=p", cookieHdr(c))
		if r.Status != 200 {
			t.Fatalf("ticket at 3/4 life: %d %s", r.Status, r.Body)
		}
		renewed := vncCookie(t, r)
		e.clock.Add(app.VNCTicketTTL / 2)
		wantErr(t, e.vncGet(userA+"/vnc.html?path=p", cookieHdr(c)), 401, "unauthenticated")
		if r := e.vncGet(userA+"/vnc.html?path=p", cookieHdr(renewed)); r.Status != 200 {
			t.Fatalf("renewed ticket: %d %s", r.Status, r.Body)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		e.t = t
		before := ns.desk.count()
		// No credentials at all: 401 with the bearer challenge.
		r := e.vncGet(userA+"/vnc.html", nil)
		wantErr(t, r, 401, "unauthenticated")
		if !strings.Contains(r.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("401 without a challenge")
		}
		wantErr(t, e.vncGet(userA+"/vnc.html?token=garbage.garbage.garbage", nil), 401, "unauthenticated")
		ws, res := wsDial(t, e.srv.URL+userA+"/websockify", nil)
		if ws != nil || res.StatusCode != 401 {
			t.Fatalf("anonymous websocket: %d", res.StatusCode)
		}
		// Bob cannot reach Alice's desktop by any credential form; it does not exist for him.
		wantErr(t, e.vncGet(userA+"/vnc.html", bearerHdr(bob)), 404, "not_found")
		wantErr(t, e.vncGet(userA+"/vnc.html?token="+bob, nil), 404, "not_found")
		ws, res = wsDial(t, e.srv.URL+userA+"/websockify", bearerHdr(bob))
		if ws != nil || res.StatusCode != 404 {
			t.Fatalf("bob's websocket to alice's host: %d", res.StatusCode)
		}
		r = e.vncGet("/v1/user/hosts/"+hostB+"/vnc/vnc.html?token="+bob, nil)
		bobTicket := vncCookie(t, r)
		wantErr(t, e.vncGet(userA+"/vnc.html", cookieHdr(bobTicket)), 401, "unauthenticated")
		// The admin door is for administrators who may write.
		wantErr(t, e.vncGet(adminA+"/vnc.html", bearerHdr(alice)), 403, "forbidden")
		wantErr(t, e.vncGet(adminA+"/vnc.html", bearerHdr(viewer)), 403, "forbidden")
		var tok struct{ Token string }
		e.do("POST", "/v1/tokens", e.admin, map[string]any{"name": "ro", "write": false}, 201, &tok)
		wantErr(t, e.vncGet(adminA+"/vnc.html", bearerHdr(tok.Token)), 403, "insufficient_scope")
		wantErr(t, e.vncGet("/v1/admin/hosts/no-such-host/vnc/vnc.html", bearerHdr(e.admin)), 404, "not_found")
		// None of the refused requests reached the container.
		if n := ns.desk.count(); n != before {
			t.Fatalf("%d refused requests reached the desktop", n-before)
		}
	})

	t.Run("stopped host, desktop down, no namespace access", func(t *testing.T) {
		e.t = t
		e.mustSucceed(e.action("POST", "/v1/admin/hosts/"+hostA+"/stop"))
		wantErr(t, e.vncGet(userA+"/vnc.html", bearerHdr(alice)), 409, "host_not_running")
		wantErr(t, e.vncGet(adminA+"/vnc.html", bearerHdr(e.admin)), 409, "host_not_running")
		ws, res := wsDial(t, e.srv.URL+userA+"/websockify", bearerHdr(alice))
		if ws != nil || res.StatusCode != 409 {
			t.Fatalf("websocket to a stopped host: %d", res.StatusCode)
		}

		// Started again (a new pid, so no pooled connection): the desktop is not up yet.
		e.mustSucceed(e.action("POST", "/v1/admin/hosts/"+hostA+"/start"))
		setFail := func(err error) {
			ns.mu.Lock()
			ns.fail = err
			ns.mu.Unlock()
		}
		setFail(errors.New("connect: connection refused"))
		wantErr(t, e.vncGet(userA+"/core/rfb.js", bearerHdr(alice)), 502, "vnc_unreachable")
		setFail(fmt.Errorf("setns: %w", os.ErrPermission))
		wantErr(t, e.vncGet(userA+"/core/rfb.js", bearerHdr(alice)), 503, "vnc_unavailable")
		setFail(nil)
		if r := e.vncGet(userA+"/vnc.html?path=p", bearerHdr(alice)); r.Status != 200 {
			t.Fatalf("restarted: %d %s", r.Status, r.Body)
		}
		// The engine is the judge too: a container that died behind the store's back.
		_ = rt.Stop(context.Background(), hostA, 0)
		wantErr(t, e.vncGet(userA+"/vnc.html", bearerHdr(alice)), 409, "host_not_running")
	})
}

func inspectFake(t *testing.T, rt *testenv.Runtime, id string) app.RuntimeHost {
	t.Helper()
	h, _ := rt.Inspect(context.Background(), id)
	return h
}

// TestVNCRateLimit checks that a desktop page's many files and its websocket do not eat the
// API budget, while opening it with a credential and failed authentications do.
func TestVNCRateLimit(t *testing.T) {
	e, _, _ := vncFake(t, withRateLimit(60))
	_, alice, _, prefix := e.aliceDesktop()
	c := vncCookie(t, e.vncGet(prefix+"/vnc.html?token="+alice, nil))
	for i := 0; i < 100; i++ {
		if r := e.vncGet(fmt.Sprintf("%s/core/file%d.js", prefix, i), cookieHdr(c)); r.Status != 200 {
			t.Fatalf("asset %d: %d %s", i, r.Status, r.Body)
		}
	}
	limited := false
	for i := 0; i < 200 && !limited; i++ {
		r := e.vncGet(prefix+"/vnc.html", nil)
		switch r.Status {
		case 401:
		case 429:
			limited = r.errCode() == "rate_limited" && r.Header.Get("Retry-After") != ""
		default:
			t.Fatalf("anonymous request %d: %d %s", i, r.Status, r.Body)
		}
	}
	if !limited {
		t.Fatal("failed VNC authentications are never rate limited")
	}
	// The spent budget is the API's too, but the cookie still carries the open desktop.
	if r := e.vncGet(prefix+"/core/util.js", cookieHdr(c)); r.Status != 200 {
		t.Fatalf("asset after the budget is spent: %d", r.Status)
	}
}

// TestVNCRateLimitBeforeAuthentication: a credential sent to a VNC route is charged before
// it is checked, so a client over its budget cannot make the server verify (and audit as
// auth.failure) one credential after another.
func TestVNCRateLimitBeforeAuthentication(t *testing.T) {
	e, _, _ := vncFake(t, withRateLimit(60))
	_, _, _, prefix := e.aliceDesktop()
	limited := 0
	for i := 0; i < 150; i++ {
		var r resp
		if i%2 == 0 {
			r = e.vncGet(prefix+"/vnc.html", bearerHdr("garbage.garbage.garbage"))
		} else {
			r = e.vncGet(prefix+"/vnc.html?token=garbage.garbage.garbage", nil)
		}
		switch r.Status {
		case 401:
		case 429:
			limited++
		default:
			t.Fatalf("request %d: %d %s", i, r.Status, r.Body)
		}
	}
	if limited == 0 {
		t.Fatal("never rate limited")
	}
	admin, err := e.svc.Authenticate(context.Background(), "127.0.0.1", e.admin)
	if err != nil {
		t.Fatal(err)
	}
	page, err := e.svc.ListEvents(context.Background(), admin, app.EventQuery{Type: "auth.failure", Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	if n, max := len(page.Events), 150-limited; n > max {
		t.Fatalf("%d credentials were checked and audited, but only %d requests were within the budget", n, max)
	}
}

// TestVNCRefusesServiceWorkers: a page served from a container runs on the control plane's
// origin, so it must not install a service worker there (one would see later ?token= opens).
func TestVNCRefusesServiceWorkers(t *testing.T) {
	e, _, ns := vncFake(t)
	_, alice, _, prefix := e.aliceDesktop()
	before := ns.desk.count()
	h := bearerHdr(alice)
	h.Set("Service-Worker", "script")
	wantErr(t, e.vncGet(prefix+"/sw.js", h), 403, "service_worker")
	if ns.desk.count() != before {
		t.Fatal("a service worker script request reached the container")
	}
	r := e.vncGet(prefix+"/app/ui.js", bearerHdr(alice))
	if r.Status != 200 {
		t.Fatalf("status %d body %s", r.Status, r.Body)
	}
	if v := r.Header.Get("Service-Worker-Allowed"); v != "" {
		t.Fatalf("the container widened a service worker scope through the proxy: %q", v)
	}
}

// ---- the real engine: websockify + TigerVNC in the test image ----

// vncEngine is engine plus what the desktop proxy needs: root, to enter network namespaces.
func vncEngine(t *testing.T) *env {
	t.Helper()
	rt, _ := engine(t)
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the VNC proxy dials inside container network namespaces, which needs root")
		}
		t.Skip("the VNC proxy dials inside container network namespaces, which needs root")
	}
	return newEnv(t, withRuntime(rt), withImage())
}

// waitDesktop polls the proxied page until websockify answers inside the container.
func (e *env) waitDesktop(prefix, bearer string) {
	e.t.Helper()
	deadline := time.Now().Add(180 * time.Second)
	var last resp
	for time.Now().Before(deadline) {
		last = e.vncGet(prefix+"/vnc.html?path=x", bearerHdr(bearer))
		if last.Status == 200 && strings.Contains(string(last.Body), "noVNC") {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	e.t.Fatalf("desktop never answered through the proxy: %d %s", last.Status, last.Body)
}

func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (apt-get install chromium; scripts/test.sh does)")
	}
	t.Skip("chromium is not installed (apt-get install chromium)")
	return ""
}

// TestVNCOnRealEngine proxies to the real desktop of a running container: the websocket
// speaks RFB through the proxy, headless Chromium connects noVNC, and the refusals hold.
func TestVNCOnRealEngine(t *testing.T) {
	e := vncEngine(t)
	aliceID, alice := e.user("alice", "user")
	_, bob := e.user("bob", "user")
	hostA := e.newRunningHost(aliceID)
	prefix := "/v1/user/hosts/" + hostA + "/vnc"
	e.waitDesktop(prefix, alice)

	t.Run("websocket upgrade returns the RFB banner", func(t *testing.T) {
		e.t = t
		for _, p := range []string{prefix, "/v1/admin/hosts/" + hostA + "/vnc"} {
			tok := alice
			if strings.HasPrefix(p, "/v1/admin/") {
				tok = e.admin
			}
			ws, res := wsDial(t, e.srv.URL+p+"/websockify", bearerHdr(tok))
			if ws == nil {
				b, _ := io.ReadAll(res.Body)
				t.Fatalf("%s: upgrade refused: %d %s", p, res.StatusCode, b)
			}
			if got := ws.readBanner(t); !strings.HasPrefix(got, "RFB 003.00") {
				t.Fatalf("%s: banner %q, want RFB 003.00x", p, got)
			}
			ws.Close()
		}
	})

	t.Run("headless chromium connects noVNC", func(t *testing.T) {
		e.t = t
		chrome := chromiumPath(t)
		opts := append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1400, 1000))
		// The whole browser lives at most this long; single actions get no timeout of
		// their own (a timeout on the first Run would stop the browser, see chromedp.Run).
		limit, stop := context.WithTimeout(context.Background(), 5*time.Minute)
		defer stop()
		actx, cancel := chromedp.NewExecAllocator(limit, opts...)
		defer cancel()
		ctx, cancel := chromedp.NewContext(actx)
		defer cancel()

		// The URL a user is given: the page with their credential, which the server swaps
		// for a cookie before noVNC loads its modules and opens the websocket.
		open := e.srv.URL + prefix + "/vnc.html?autoconnect=1&token=" + url.QueryEscape(alice)
		if err := chromedp.Do(ctx, chromedp.Navigate(open)); err != nil {
			t.Fatalf("chromium (%s) could not open the page: %v", chrome, err)
		}
		type state struct {
			Connected bool   `json:"connected"`
			Status    string `json:"status"`
			W         int    `json:"w"`
			H         int    `json:"h"`
			URL       string `json:"url"`
		}
		var st state
		deadline := time.Now().Add(180 * time.Second)
		reloadAt := time.Now().Add(90 * time.Second)
		for {
			var err error
			st, err = chromedp.Run(ctx, chromedp.Evaluate[state](`(() => {
				const c = document.querySelector('#noVNC_container canvas');
				const s = document.getElementById('noVNC_status');
				return {connected: document.documentElement.classList.contains('noVNC_connected'),
					status: s ? s.textContent : '', w: c ? c.width : 0, h: c ? c.height : 0, url: location.href};
			})()`))
			if err == nil && st.Connected && st.W >= 640 && st.H >= 480 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("noVNC did not connect: %+v (err %v)", st, err)
			}
			if !reloadAt.IsZero() && time.Now().After(reloadAt) && st.URL == "" {
				// Seen once on a saturated machine: the browser never rendered the first
				// load at all (no document). Open the page once more, as a user would; a
				// page that loads but does not connect is never retried.
				t.Logf("chromium shows no page after 90 s (err %v): opening it again", err)
				reloadAt = time.Time{}
				if err := chromedp.Do(ctx, chromedp.Navigate(open)); err != nil {
					t.Fatalf("chromium could not open the page again: %v", err)
				}
			}
			time.Sleep(500 * time.Millisecond)
		}
		if strings.Contains(st.URL, "token=") {
			t.Errorf("the credential stayed in the address bar: %s", st.URL)
		}
		if st.W != 1280 || st.H != 800 {
			t.Errorf("desktop canvas %dx%d, want the container's 1280x800", st.W, st.H)
		}
		if p := os.Getenv("CCP_VNC_SCREENSHOT"); p != "" {
			time.Sleep(2 * time.Second) // let the first framebuffer update paint
			if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
				_ = os.WriteFile(p, png, 0o644)
			}
		}
		t.Logf("noVNC: %q, canvas %dx%d", st.Status, st.W, st.H)
	})

	t.Run("refusals", func(t *testing.T) {
		e.t = t
		wantErr(t, e.vncGet(prefix+"/vnc.html", nil), 401, "unauthenticated")
		wantErr(t, e.vncGet(prefix+"/vnc.html", bearerHdr(bob)), 404, "not_found")
		ws, res := wsDial(t, e.srv.URL+prefix+"/websockify", bearerHdr(bob))
		if ws != nil || res.StatusCode != 404 {
			t.Fatalf("bob's websocket to alice's desktop: %d", res.StatusCode)
		}
		wantErr(t, e.vncGet("/v1/admin/hosts/"+hostA+"/vnc/vnc.html", bearerHdr(alice)), 403, "forbidden")
		e.mustSucceed(e.action("POST", "/v1/admin/hosts/"+hostA+"/stop"))
		wantErr(t, e.vncGet(prefix+"/vnc.html", bearerHdr(alice)), 409, "host_not_running")
		ws, res = wsDial(t, e.srv.URL+prefix+"/websockify", bearerHdr(alice))
		if ws != nil || res.StatusCode != 409 {
			t.Fatalf("websocket to a stopped host: %d", res.StatusCode)
		}
	})
}

// An open desktop websocket ends soon after its credential stops working (logout) or the
// caller loses the host; until then it stays open.
func TestVNCOpenWebsocketEndsOnLogout(t *testing.T) {
	e, _, _ := vncFake(t, func(_ *app.Config, _ *app.Deps, c *api.Config) {
		c.VNCRecheckInterval = 20 * time.Millisecond
	})
	_, _, _, prefix := e.aliceDesktop()
	sess := e.login("alice", "password-alice")
	ws, res := wsDial(t, e.srv.URL+prefix+"/websockify", bearerHdr(sess))
	if ws == nil {
		t.Fatalf("upgrade refused: %d", res.StatusCode)
	}
	defer ws.Close()
	if got := ws.readBanner(t); got != "RFB 003.008\n" {
		t.Fatalf("banner %q", got)
	}
	// Several rechecks pass while the session holds: the connection stays open.
	_ = ws.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, _, err := wsReadFrame(ws.br); err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the connection ended while its session was valid: %v", err)
	}
	e.do("POST", "/v1/auth/logout", sess, nil, 204, nil)
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := wsReadFrame(ws.br)
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("the desktop connection outlived its logged-out session by 10 s")
		}
		return // closed by the server
	}
}

// An open desktop websocket is a session app keeps: it ends within a second of the end of
// the right it stands on, without waiting for the periodic re-check.
func TestVNCWebsocketEndsWithItsRight(t *testing.T) {
	cases := []struct {
		name  string
		token bool // opened with an access token (else with a login JWT)
		end   func(e *env, aliceID, tokenID string)
	}{
		{"token revoked", true, func(e *env, _, tokenID string) {
			e.do("DELETE", "/v1/admin/tokens/"+tokenID, e.admin, nil, 204, nil)
		}},
		{"password rotated", false, func(e *env, aliceID, _ string) {
			e.do("POST", "/v1/admin/users/"+aliceID+"/rotate-password", e.admin, nil, 200, nil)
		}},
		{"admin kill", false, func(e *env, aliceID, _ string) {
			e.do("DELETE", "/v1/admin/users/"+aliceID+"/sessions", e.admin, nil, 200, nil)
		}},
		{"user disabled", true, func(e *env, aliceID, _ string) {
			e.do("PATCH", "/v1/admin/users/"+aliceID, e.admin, map[string]any{"status": "disabled"}, 200, nil)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, _, _ := vncFake(t, func(_ *app.Config, _ *app.Deps, c *api.Config) {
				c.VNCRecheckInterval = time.Hour // the end must not wait for a re-check
			})
			aliceID, alice, _, prefix := e.aliceDesktop()
			cred := alice
			var tok struct{ ID, Token string }
			if tc.token {
				e.do("POST", "/v1/tokens", alice, map[string]any{"name": "desk"}, 201, &tok)
				cred = tok.Token
			}
			ws, res := wsDial(t, e.srv.URL+prefix+"/websockify", bearerHdr(cred))
			if ws == nil {
				t.Fatalf("upgrade refused: %d", res.StatusCode)
			}
			defer ws.Close()
			if got := ws.readBanner(t); got != "RFB 003.008\n" {
				t.Fatalf("banner %q", got)
			}
			var open struct{ Sessions []app.SessionInfo }
			e.do("GET", "/v1/admin/users/"+aliceID+"/sessions", e.admin, nil, 200, &open)
			if len(open.Sessions) != 1 || open.Sessions[0].Kind != app.SessionVNC {
				t.Fatalf("open sessions %+v, want the desktop", open.Sessions)
			}
			start := time.Now()
			tc.end(e, aliceID, tok.ID)
			_ = ws.SetReadDeadline(start.Add(time.Second))
			for {
				_, _, err := wsReadFrame(ws.br)
				if err == nil {
					continue
				}
				if errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("the desktop outlived its right by 1 s (%s)", tc.name)
				}
				break
			}
			e.do("GET", "/v1/admin/users/"+aliceID+"/sessions", e.admin, nil, 200, &open)
			if len(open.Sessions) != 0 {
				t.Errorf("sessions still listed: %+v", open.Sessions)
			}
		})
	}
}
