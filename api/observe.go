package api

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/http"
	"time"

	"github.com/felixge/httpsnoop"
	"github.com/julienschmidt/httprouter"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// HTTPMetrics records what the REST door answers (internal/metrics implements it).
type HTTPMetrics interface {
	// HTTPRequest is one answered request: route is the registered pattern
	// ("/v1/admin/users/:id"), "unmatched" when no route matched.
	HTTPRequest(method, route string, status int, d time.Duration)
	// RateLimited is a request refused by the per-IP rate limit.
	RateLimited(door string)
}

// RequestIDHeader carries the id of a request, in and out.
const RequestIDHeader = "X-Request-Id"

// reqInfo is what the handlers learn about a request for the middleware around them.
type reqInfo struct {
	route string
}

type reqInfoKey struct{}

// validRequestID accepts an incoming X-Request-Id: 1 to 128 visible ASCII characters of a
// safe set (letters, digits and -_.:@/+=), so it can go into logs and events as it is.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-' || c == '_' || c == '.' || c == ':' || c == '@' || c == '/' || c == '+' || c == '=':
		default:
			return false
		}
	}
	return true
}

func newRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// observe gives every request an id (a sane incoming X-Request-Id, else a new one), answers
// it in X-Request-Id, carries it in the context (app records it on the audit events the
// request writes), and, when the request is answered, logs it and counts it by route
// pattern and status.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get(RequestIDHeader)
		if !validRequestID(id) {
			id = newRequestID()
		}
		w.Header().Set(RequestIDHeader, id)
		info := &reqInfo{route: "unmatched"}
		ctx := context.WithValue(app.WithRequestID(r.Context(), id), reqInfoKey{}, info)
		status := 0
		w = httpsnoop.Wrap(w, httpsnoop.Hooks{
			WriteHeader: func(next httpsnoop.WriteHeaderFunc) httpsnoop.WriteHeaderFunc {
				return func(code int) {
					if status == 0 {
						status = code
					}
					next(code)
				}
			},
			Write: func(next httpsnoop.WriteFunc) httpsnoop.WriteFunc {
				return func(b []byte) (int, error) {
					if status == 0 {
						status = http.StatusOK
					}
					return next(b)
				}
			},
			Hijack: func(next httpsnoop.HijackFunc) httpsnoop.HijackFunc {
				return func() (net.Conn, *bufio.ReadWriter, error) {
					if status == 0 {
						status = http.StatusSwitchingProtocols
					}
					return next()
				}
			},
		})
		defer func() {
			if status == 0 {
				status = http.StatusOK
			}
			d := time.Since(start)
			if s.cfg.Metrics != nil {
				s.cfg.Metrics.HTTPRequest(r.Method, info.route, status, d)
			}
			s.log.LogAttrs(ctx, levelOf(info.route, status), "request", slogAttrs(r, info.route, status, d)...)
		}()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// routeOf tells the middleware the pattern of the route that matched.
func routeOf(r *http.Request, pattern string) {
	if info, ok := r.Context().Value(reqInfoKey{}).(*reqInfo); ok {
		info.route = pattern
	}
}

// serveMetrics answers /metrics on the API port: admins only.
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	routeOf(r, "/metrics")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: errorDetail{Code: string(app.CodeMethodNotAllowed), Message: r.Method + " is not allowed on " + r.URL.Path}})
		return
	}
	s.authed(func(w http.ResponseWriter, r *http.Request, _ httprouter.Params, p app.Principal) {
		if err := s.svc.AuthorizeMetrics(r.Context(), p); err != nil {
			s.writeError(w, r, err)
			return
		}
		s.cfg.MetricsHandler.ServeHTTP(w, r)
	})(w, r, nil)
}
