package api

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/julienschmidt/httprouter"
	"golang.org/x/time/rate"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// Config tunes the REST door.
type Config struct {
	// RateLimitPerMinute is the per-client-IP budget of the /v1 API; 0 disables the limit.
	RateLimitPerMinute int
	// VNCDial dials the desktop inside a container's network namespace; nil is
	// app.Service.DialWorkspace (tests substitute their own).
	VNCDial VNCDialer
	// VNCRecheckInterval is how often an open desktop websocket's credential and the
	// caller's right to the host are checked again (a logout, revocation, disabled account
	// or stopped host ends it); 0 means 30 s.
	VNCRecheckInterval time.Duration
	// FeedHeartbeat is how often an idle change-feed stream gets a comment; 0 means 15s.
	FeedHeartbeat time.Duration
	// Metrics counts requests by route pattern and status and rate-limit refusals; nil: none.
	Metrics HTTPMetrics
	// MetricsHandler, when set, is served at GET /metrics on this door, to administrators
	// only (METRICS_ADDR=api).
	MetricsHandler http.Handler
}

// Server is the REST door.
type Server struct {
	svc     *app.Service
	log     *slog.Logger
	cfg     Config
	limiter *ipLimiter
	router  *httprouter.Router
	routes  []Route

	vncOnce sync.Once
	vncRP   *httputil.ReverseProxy
}

// Route is one registered method and path, with who it is meant for.
type Route struct {
	Method string
	Path   string
	// Access is public, auth (any signed-in user), admin_read or admin_write.
	Access string
}

// New builds the REST door on a service.
func New(svc *app.Service, cfg Config, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	log = slog.New(requestIDHandler{log.Handler()})
	s := &Server{svc: svc, log: log, cfg: cfg, router: httprouter.New()}
	if cfg.RateLimitPerMinute > 0 {
		s.limiter = newIPLimiter(cfg.RateLimitPerMinute)
	}
	s.router.HandleMethodNotAllowed = true
	s.router.NotFound = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, &app.Error{Kind: app.KindNotFound, Code: app.CodeRouteNotFound, Message: "no such route: " + r.Method + " " + r.URL.Path})
	})
	s.router.MethodNotAllowed = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: errorDetail{Code: string(app.CodeMethodNotAllowed), Message: r.Method + " is not allowed on " + r.URL.Path}})
	})
	s.router.PanicHandler = func(w http.ResponseWriter, r *http.Request, v any) {
		if v == http.ErrAbortHandler {
			panic(v) // a proxied response cut short: net/http drops the connection quietly
		}
		s.log.Error("panic in handler", "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		s.writeError(w, r, fmt.Errorf("panic: %v", v))
	}
	s.registerRoutes()
	return s
}

// Routes lists every registered route (the authorization matrix test walks it).
func (s *Server) Routes() []Route { return append([]Route(nil), s.routes...) }

// Handler is the whole HTTP surface with its middleware.
func (s *Server) Handler() http.Handler {
	var h http.Handler = s.router
	if s.cfg.MetricsHandler != nil {
		router := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/metrics" {
				s.serveMetrics(w, r)
				return
			}
			router.ServeHTTP(w, r)
		})
	}
	return s.observe(s.recoverer(s.rateLimit(h)))
}

// Sweep drops idle rate-limit entries until ctx ends.
func (s *Server) Sweep(ctx context.Context) {
	if s.limiter == nil {
		return
	}
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.limiter.sweep(now)
		}
	}
}

func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic", "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				s.writeError(w, r, fmt.Errorf("panic: %v", v))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// clientIP is the peer address of the connection (proxy headers are not trusted).
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// rateLimit applies the per-IP token bucket to the /v1 API and the entry pages. The VNC
// routes are left to their handler: a desktop page loads dozens of static files and a
// websocket on its ticket cookie, which are not charged (credentials and failures are).
func (s *Server) rateLimit(next http.Handler) http.Handler {
	if s.limiter == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || isVNCPath(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		if s.charge(w, r) {
			next.ServeHTTP(w, r)
		}
	})
}

// charge takes one request from the caller's budget and sets the rate-limit headers. When
// the budget is spent it answers 429 and returns false.
func (s *Server) charge(w http.ResponseWriter, r *http.Request) bool {
	if s.limiter == nil {
		return true
	}
	ok, remaining, wait := s.limiter.take(clientIP(r), time.Now())
	h := w.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(s.limiter.perMinute))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
	reset := int(math.Ceil(float64(s.limiter.perMinute-remaining) * 60 / float64(s.limiter.perMinute)))
	h.Set("X-RateLimit-Reset", strconv.Itoa(reset))
	if !ok {
		if s.cfg.Metrics != nil {
			s.cfg.Metrics.RateLimited("api")
		}
		s.writeError(w, r, &app.Error{Kind: app.KindRateLimited, Code: app.CodeRateLimited,
			Message: fmt.Sprintf("rate limit of %d requests per minute exceeded", s.limiter.perMinute), RetryAfter: wait})
		return false
	}
	return true
}

type ipLimiter struct {
	perMinute int
	mu        sync.Mutex
	m         map[string]*limEntry
}

type limEntry struct {
	lim  *rate.Limiter
	seen time.Time
}

func newIPLimiter(perMinute int) *ipLimiter {
	return &ipLimiter{perMinute: perMinute, m: map[string]*limEntry{}}
}

func (l *ipLimiter) take(ip string, now time.Time) (ok bool, remaining int, wait time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.m[ip]
	if e == nil {
		e = &limEntry{lim: rate.NewLimiter(rate.Limit(float64(l.perMinute)/60), l.perMinute)}
		l.m[ip] = e
	}
	e.seen = now
	r := e.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, 0, d
	}
	return true, int(e.lim.TokensAt(now)), 0
}

func (l *ipLimiter) sweep(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for ip, e := range l.m {
		if now.Sub(e.seen) > 2*time.Minute {
			delete(l.m, ip)
		}
	}
}

// principalHandler is a handler that runs for an authenticated caller.
type principalHandler func(w http.ResponseWriter, r *http.Request, ps httprouter.Params, p app.Principal)

// authed wraps h with bearer authentication (a JWT or an access token).
func (s *Server) authed(h principalHandler) httprouter.Handle {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		cred := bearerCredential(r)
		if cred == "" {
			s.writeError(w, r, &app.Error{Kind: app.KindUnauthenticated, Code: app.CodeUnauthenticated, Message: "invalid or missing credentials"})
			return
		}
		p, err := s.authenticate(r, cred, "bearer credential")
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		h(w, r, ps, p)
	}
}

// bearerCredential is the credential of an "Authorization: Bearer <cred>" header, or "" when
// the header is missing or malformed.
func bearerCredential(r *http.Request) string {
	scheme, cred, found := strings.Cut(r.Header.Get("Authorization"), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(cred)
}

// authenticate checks an API credential (a JWT or an access token) and records a refused one
// as an auth failure; where names what carried it ("bearer credential").
func (s *Server) authenticate(r *http.Request, cred, where string) (app.Principal, error) {
	ip := clientIP(r)
	p, err := s.svc.AuthenticateRequest(r.Context(), ip, r.Method+" "+r.URL.Path, cred)
	if err != nil && app.AsError(err).Kind == app.KindUnauthenticated {
		method := "jwt"
		if strings.HasPrefix(cred, app.TokenPrefix) {
			method = "token"
		}
		s.svc.RecordAuthFailure(r.Context(), ip, method, "rejected "+where+" on "+r.Method+" "+r.URL.Path)
	}
	return p, err
}

func (s *Server) handle(method, path, access string, h httprouter.Handle) {
	s.router.Handle(method, path, func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		routeOf(r, path)
		h(w, r, ps)
	})
	s.routes = append(s.routes, Route{Method: method, Path: path, Access: access})
}
