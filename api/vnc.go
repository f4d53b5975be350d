package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// The browser desktop proxy.
//
// /v1/admin/hosts/:id/vnc/*path and /v1/user/hosts/:id/vnc/*path forward to the desktop web
// server (noVNC/KasmVNC and its websocket) on 127.0.0.1:6901 inside the host's container,
// dialled inside the container's network namespace (containers have no published ports).
// app decides who may use which host (VNCTarget); this file only authenticates the request,
// proxies it and answers errors in the one JSON shape.
//
// Authentication, first match wins:
//   - Authorization: Bearer <JWT or access token>, as on every other route (API clients);
//   - ?token=<JWT or access token>, for a browser opening the page: a GET of a page answers
//     303 to the same URL without the token and sets the ticket cookie;
//   - the ticket cookie (VNCCookieName): a short-lived ticket bound to the user, the host, the
//     door and the credential it was issued for, HttpOnly, SameSite=Lax, scoped to the host's
//     VNC path. It carries the page's static files and the websocket, on which browsers cannot
//     set headers. It is renewed while in use and re-checked against the account on each use.
//
// Requests carried by the cookie are exempt from the per-IP rate limit (a page is dozens of
// files); every other request on these routes, failures included, is charged.

// VNCCookieName is the cookie carrying a VNC ticket.
const VNCCookieName = "ccp_vnc"

// vncTokenParam is the query parameter a browser passes its credential in.
const vncTokenParam = "token"

// vncSocketKeyParam carries a desktop websocket's key (app.Service.VNCSocketKey).
const vncSocketKeyParam = "k"

// VNCDialer dials addr inside the network namespace of process pid.
type VNCDialer func(ctx context.Context, pid int, network, addr string) (net.Conn, error)

type vncCtxKey struct{}

// vncUpstream is what the proxy's Rewrite needs of one request.
type vncUpstream struct {
	target app.VNCTarget
	path   string // escaped path inside the container, starting with /
	query  string // raw query without the token
}

type authVia int

const (
	viaBearer authVia = iota
	viaQuery
	viaCookie
)

func (s *Server) registerVNCRoutes() {
	for _, m := range []string{"GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"} {
		s.handle(m, "/v1/admin/hosts/:id/vnc/*path", accessAdminWrite, s.vnc(app.VNCAdmin))
		s.handle(m, "/v1/user/hosts/:id/vnc/*path", accessAuth, s.vnc(app.VNCUser))
	}
}

// vncPrefix is the path under which one host's desktop is served through a door.
func vncPrefix(door app.VNCDoor, hostID string) string {
	return "/v1/" + string(door) + "/hosts/" + url.PathEscape(hostID) + "/vnc"
}

// isVNCPath reports whether path is under a VNC route (the rate limiter leaves those to the
// VNC handler, which charges everything but the requests its ticket cookie carries).
func isVNCPath(path string) bool {
	var rest string
	switch {
	case strings.HasPrefix(path, "/v1/admin/hosts/"):
		rest = path[len("/v1/admin/hosts/"):]
	case strings.HasPrefix(path, "/v1/user/hosts/"):
		rest = path[len("/v1/user/hosts/"):]
	default:
		return false
	}
	id, tail, ok := strings.Cut(rest, "/")
	return ok && id != "" && strings.HasPrefix(tail, "vnc/")
}

func isWebSocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket") &&
		strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade")
}

func (s *Server) vnc(door app.VNCDoor) httprouter.Handle {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		hostID := ps.ByName("id")
		prefix := vncPrefix(door, hostID)
		// A container's page runs on this server's origin: it must not install a service
		// worker here (one in scope would see the ?token= of later opens).
		if r.Header.Get("Service-Worker") != "" {
			s.writeError(w, r, &app.Error{Kind: app.KindForbidden, Code: app.CodeServiceWorker,
				Message: "service workers cannot be installed through the browser desktop"})
			return
		}
		// A request with a credential (opening the page with ?token=, an API client's
		// bearer) costs one request of the API budget, taken before the credential is
		// checked (as on every other route); the page's many static files and its
		// websocket, carried by the ticket cookie, cost nothing unless refused.
		credential := r.Header.Get("Authorization") != "" || r.URL.Query().Has(vncTokenParam)
		if credential && !s.charge(w, r) {
			return
		}
		p, via, exp, err := s.vncAuthenticate(r, hostID, door)
		if err != nil {
			if credential || s.charge(w, r) {
				if via == viaCookie {
					s.clearVNCCookie(w, r, prefix)
				}
				s.writeError(w, r, err)
			}
			return
		}
		ws := isWebSocket(r)
		if via == viaCookie && !sameOrigin(r) {
			s.writeError(w, r, &app.Error{Kind: app.KindForbidden, Code: app.CodeCrossOrigin,
				Message: "the browser desktop cannot be used from another origin"})
			return
		}
		if ws && via == viaCookie {
			// The cookie alone could have been attached by a page another container served
			// on this origin: the websocket must also carry the socket key that only the
			// address of this desktop's own page holds.
			if err := s.svc.CheckVNCSocketKey(p, hostID, door, r.URL.Query().Get(vncSocketKeyParam)); err != nil {
				if s.charge(w, r) { // over budget, charge has answered 429
					s.writeError(w, r, err)
				}
				return
			}
		}
		target, err := s.svc.VNCTarget(r.Context(), p, hostID, door, ws)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if via == viaQuery || (via == viaCookie && s.svc.VNCTicketDue(exp)) {
			t, err := s.svc.IssueVNCTicket(r.Context(), p, hostID, door)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			s.setVNCCookie(w, r, prefix, t, s.svc.Now())
		}

		upPath, ok := strings.CutPrefix(r.URL.EscapedPath(), prefix)
		if !ok || !strings.HasPrefix(upPath, "/") {
			// The router matched an encoded form of the prefix; use the decoded wildcard.
			upPath = (&url.URL{Path: ps.ByName("path")}).EscapedPath()
		}
		// noVNC 1.5 and later resolve a path setting without a leading slash (see below)
		// against the page's URL: <prefix>/<prefix>/websockify means <prefix>/websockify.
		if rest, ok := strings.CutPrefix(upPath, prefix+"/"); ok {
			upPath = "/" + rest
		}
		q := r.URL.Query()
		hadToken := q.Has(vncTokenParam)
		q.Del(vncTokenParam)
		q.Del(vncSocketKeyParam)
		// noVNC builds its websocket URL from the path setting (default "websockify", from
		// the site root, remembered across hosts in localStorage): point it at this host.
		page := !ws && (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
			(upPath == "/vnc.html" || upPath == "/vnc_lite.html")
		addPath := page && (!q.Has("path") || hadToken)
		if addPath {
			// Opened with a credential: the page's address gets the websocket path with its
			// socket key (see VNCSocketKey). Opened on the cookie alone, it gets the path
			// without one, so a page elsewhere on this origin cannot learn a key by opening it.
			ws := strings.TrimPrefix(prefix, "/") + "/websockify"
			if hadToken {
				ws += "?" + vncSocketKeyParam + "=" + url.QueryEscape(s.svc.VNCSocketKey(p, hostID, door))
			}
			q.Set("path", ws)
		}
		if !ws && (r.Method == http.MethodGet || r.Method == http.MethodHead) && (hadToken || addPath) {
			// Take the credential out of the address bar, history and Referer headers.
			w.Header().Set("Cache-Control", "no-store")
			loc := &url.URL{Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: q.Encode()}
			http.Redirect(w, r, loc.RequestURI(), http.StatusSeeOther)
			return
		}
		up := vncUpstream{target: target, path: upPath, query: q.Encode()}
		if len(q) == 0 {
			up.query = ""
		}
		ctx := context.WithValue(r.Context(), vncCtxKey{}, up)
		if ws {
			// The websocket is one request that lives as long as the desktop is open: check
			// again, now and then, that its credential still holds and the host may still be
			// used; when not, cancelling the request closes both ends.
			// It is also a session app keeps: the end of the right it stands on (a revoked
			// token, a changed password, a disabled account, a deleted host, a kill) closes
			// it at once.
			var cancel context.CancelFunc
			ctx, cancel = context.WithCancel(ctx)
			defer cancel()
			lease, err := s.svc.TrackSession(p, app.SessionVNC, hostID, "", "browser desktop ("+string(door)+" door)",
				func(string) { cancel() })
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			defer lease.Close()
			go s.watchVNC(ctx, cancel, r, hostID, door)
		}
		s.vncProxy().ServeHTTP(w, r.WithContext(ctx))
	}
}

// watchVNC ends an open desktop websocket (cancel) once its request's credential no longer
// authenticates or its caller may no longer use the host.
func (s *Server) watchVNC(ctx context.Context, cancel context.CancelFunc, r *http.Request, hostID string, door app.VNCDoor) {
	every := s.cfg.VNCRecheckInterval
	if every <= 0 {
		every = 30 * time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		rc := r.WithContext(ctx)
		p, _, _, err := s.vncAuthenticate(rc, hostID, door)
		if err == nil {
			_, err = s.svc.VNCTarget(ctx, p, hostID, door, false)
		}
		if err != nil && ctx.Err() == nil {
			s.log.Info("closing a desktop connection", "host", hostID, "reason", app.AsError(err).Message)
			cancel()
			return
		}
	}
}

// vncAuthenticate finds the caller of a VNC request: a bearer header, a token query
// parameter or the ticket cookie. exp is the ticket's expiry when via is viaCookie.
func (s *Server) vncAuthenticate(r *http.Request, hostID string, door app.VNCDoor) (p app.Principal, via authVia, exp time.Time, err error) {
	if r.Header.Get("Authorization") != "" {
		cred := bearerCredential(r)
		if cred == "" {
			return p, viaBearer, exp, vncUnauthenticated()
		}
		p, err = s.authenticate(r, cred, "bearer credential")
		return p, viaBearer, exp, err
	}
	if q := r.URL.Query(); q.Has(vncTokenParam) {
		cred := strings.TrimSpace(q.Get(vncTokenParam))
		if cred == "" {
			return p, viaQuery, exp, vncUnauthenticated()
		}
		p, err = s.authenticate(r, cred, "token parameter")
		return p, viaQuery, exp, err
	}
	var seen bool
	for _, c := range r.Cookies() {
		if c.Name != VNCCookieName {
			continue
		}
		seen = true
		p, exp, err = s.svc.AuthenticateVNCTicket(r.Context(), clientIP(r), c.Value, hostID, door)
		if err == nil {
			return p, viaCookie, exp, nil
		}
		if app.AsError(err).Kind != app.KindUnauthenticated {
			return p, viaCookie, exp, err
		}
	}
	if seen {
		return p, viaCookie, exp, &app.Error{Kind: app.KindUnauthenticated, Code: app.CodeUnauthenticated,
			Message: "the desktop session expired or was revoked: open the desktop again with ?token=<your token>"}
	}
	return p, viaBearer, exp, vncUnauthenticated()
}

func vncUnauthenticated() error {
	return &app.Error{Kind: app.KindUnauthenticated, Code: app.CodeUnauthenticated,
		Message: "invalid or missing credentials: send Authorization: Bearer <token>, or open the page with ?token=<token>"}
}

// sameOrigin refuses a cookie-carried request whose Origin is another site (a page elsewhere
// opening a websocket to the desktop with the victim's cookie). Requests without Origin
// (same-origin GETs, non-browser clients) pass.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

func (s *Server) setVNCCookie(w http.ResponseWriter, r *http.Request, prefix string, t app.VNCTicket, now time.Time) {
	maxAge := int(t.ExpiresAt.Sub(now) / time.Second)
	if maxAge < 1 {
		maxAge = 1
	}
	http.SetCookie(w, &http.Cookie{Name: VNCCookieName, Value: t.Value, Path: prefix + "/", MaxAge: maxAge,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode})
}

func (s *Server) clearVNCCookie(w http.ResponseWriter, r *http.Request, prefix string) {
	http.SetCookie(w, &http.Cookie{Name: VNCCookieName, Value: "", Path: prefix + "/", MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode})
}

// vncProxy is the one reverse proxy of every desktop. Its upstream host name carries the
// container's pid and host id, so the transport keeps separate idle connections per
// container (every container's desktop is 127.0.0.1:6901 in its own namespace).
func (s *Server) vncProxy() *httputil.ReverseProxy {
	s.vncOnce.Do(func() {
		dial := s.cfg.VNCDial
		if dial == nil {
			dial = s.svc.DialWorkspace
		}
		tr := &http.Transport{
			Proxy: nil,
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				host, port, err := net.SplitHostPort(addr)
				if err != nil {
					return nil, err
				}
				pidLabel, _, _ := strings.Cut(host, ".")
				pid, err := strconv.Atoi(strings.TrimPrefix(pidLabel, "pid"))
				if err != nil {
					return nil, fmt.Errorf("vnc proxy: bad upstream %q", addr)
				}
				dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				return dial(dctx, pid, "tcp", net.JoinHostPort("127.0.0.1", port))
			},
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       30 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
		}
		s.vncRP = &httputil.ReverseProxy{
			Transport: tr,
			Rewrite: func(pr *httputil.ProxyRequest) {
				up, _ := pr.In.Context().Value(vncCtxKey{}).(vncUpstream)
				_, port, _ := net.SplitHostPort(up.target.Addr)
				pr.Out.URL.Scheme = "http"
				pr.Out.URL.Host = net.JoinHostPort(fmt.Sprintf("pid%d.%s.vnc.invalid", up.target.Pid, up.target.HostID), port)
				p, err := url.PathUnescape(up.path)
				if err != nil {
					p = up.path
				}
				pr.Out.URL.Path, pr.Out.URL.RawPath = p, up.path
				pr.Out.URL.RawQuery = up.query
				pr.Out.Host = up.target.Addr
				// The container is its user's: never hand it the caller's credentials.
				pr.Out.Header.Del("Authorization")
				pr.Out.Header.Del("Cookie")
				pr.Out.Header.Del("Referer") // the page's address holds its socket key
			},
			ModifyResponse: func(res *http.Response) error {
				// Nor let it set cookies on this server's origin, or widen a service
				// worker's scope to it.
				res.Header.Del("Set-Cookie")
				res.Header.Del("Service-Worker-Allowed")
				return nil
			},
			ErrorHandler: s.vncProxyError,
			ErrorLog:     slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		}
	})
	return s.vncRP
}

func (s *Server) vncProxyError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) {
		return // the client went away
	}
	up, _ := r.Context().Value(vncCtxKey{}).(vncUpstream)
	if errors.Is(err, os.ErrPermission) {
		s.log.Error("vnc proxy cannot enter the container's network namespace (needs root on the engine host)", "host", up.target.HostID, "err", err)
		s.writeError(w, r, &app.Error{Kind: app.KindUnavailable, Code: app.CodeVNCUnavailable,
			Message: "the browser desktop proxy cannot reach containers on this server"})
		return
	}
	s.log.Debug("vnc proxy upstream failed", "host", up.target.HostID, "path", up.path, "err", err)
	writeJSON(w, http.StatusBadGateway, errorBody{Error: errorDetail{Code: string(app.CodeVNCUnreachable),
		Message: fmt.Sprintf("the host's desktop (port %d in the container) did not answer; it may still be starting, try again shortly", app.VNCPort)}})
}
