package api

import (
	"net/http"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// Access levels of routes.
const (
	accessPublic     = "public"
	accessAuth       = "auth"
	accessAdminRead  = "admin_read"
	accessAdminWrite = "admin_write"
)

// reply adapts a service call that returns a value into an authenticated handler.
func reply[T any](s *Server, status int, fn func(r *http.Request, ps httprouter.Params, p app.Principal) (T, error)) httprouter.Handle {
	return s.authed(func(w http.ResponseWriter, r *http.Request, ps httprouter.Params, p app.Principal) {
		v, err := fn(r, ps, p)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, status, v)
	})
}

// replySecret is reply for answers that carry a secret shown once.
func replySecret[T any](s *Server, status int, fn func(r *http.Request, ps httprouter.Params, p app.Principal) (T, error)) httprouter.Handle {
	return s.authed(func(w http.ResponseWriter, r *http.Request, ps httprouter.Params, p app.Principal) {
		v, err := fn(r, ps, p)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeSecret(w, status, v)
	})
}

// noContent adapts a service call that returns nothing into a 204 handler.
func (s *Server) noContent(fn func(r *http.Request, ps httprouter.Params, p app.Principal) error) httprouter.Handle {
	return s.authed(func(w http.ResponseWriter, r *http.Request, ps httprouter.Params, p app.Principal) {
		if err := fn(r, ps, p); err != nil {
			s.writeError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// withBody decodes the request body into a fresh In before calling fn.
func withBody[In, Out any](w http.ResponseWriter, r *http.Request, fn func(in In) (Out, error)) (Out, error) {
	var in In
	if err := decode(w, r, &in); err != nil {
		var zero Out
		return zero, err
	}
	return fn(in)
}

type list[T any] map[string][]T

func (s *Server) registerRoutes() {
	svc := s.svc
	s.handle("GET", "/healthz", accessPublic, s.healthz)
	s.handle("GET", "/v1/openapi.json", accessPublic, s.openAPI)

	// Auth.
	s.handle("POST", "/v1/auth/login", accessPublic, s.login)
	s.handle("POST", "/v1/admin/login", accessPublic, s.login)
	s.handle("POST", "/v1/auth/refresh", accessAuth, replySecret(s, 200, func(r *http.Request, _ httprouter.Params, p app.Principal) (app.LoginResult, error) {
		return svc.Refresh(r.Context(), p)
	}))
	s.handle("POST", "/v1/auth/logout", accessAuth, s.noContent(func(r *http.Request, _ httprouter.Params, p app.Principal) error {
		return svc.Logout(r.Context(), p)
	}))
	s.handle("GET", "/v1/auth/me", accessAuth, reply(s, 200, func(r *http.Request, _ httprouter.Params, p app.Principal) (app.UserView, error) {
		return svc.Me(r.Context(), p)
	}))

	s.registerUserRoutes()
	s.registerEgressRoutes()
	s.registerHostRoutes()
	s.registerTokenRoutes()
	s.registerPortalRoutes()
	s.registerBootstrapRoutes()
	s.registerBackupRoutes()
	s.registerSessionRoutes()
	s.registerFeedRoutes()

	// Tasks, events, dashboard.
	s.handle("GET", "/v1/admin/tasks", accessAdminRead, reply(s, 200, func(r *http.Request, _ httprouter.Params, p app.Principal) (list[app.Task], error) {
		n, err := app.ParseLimit(r.URL.Query().Get("limit"), app.MaxTaskLimit)
		if err != nil {
			return nil, err
		}
		ts, err := svc.ListTasks(r.Context(), p, app.TaskFilter{HostID: r.URL.Query().Get("host_id"), Limit: n})
		return list[app.Task]{"tasks": ts}, err
	}))
	s.handle("GET", "/v1/admin/tasks/:id", accessAdminRead, reply(s, 200, func(r *http.Request, ps httprouter.Params, p app.Principal) (app.Task, error) {
		return svc.AdminGetTask(r.Context(), p, ps.ByName("id"))
	}))
	s.handle("GET", "/v1/admin/events", accessAdminRead, reply(s, 200, func(r *http.Request, _ httprouter.Params, p app.Principal) (app.EventPage, error) {
		q, err := parseEventQuery(r)
		if err != nil {
			return app.EventPage{}, err
		}
		return svc.ListEvents(r.Context(), p, q)
	}))
	s.handle("GET", "/v1/admin/dashboard/stats", accessAdminRead, reply(s, 200, func(r *http.Request, _ httprouter.Params, p app.Principal) (app.Stats, error) {
		return svc.DashboardStats(r.Context(), p)
	}))
}

func parseEventQuery(r *http.Request) (app.EventQuery, error) {
	v := r.URL.Query()
	q := app.EventQuery{UserID: v.Get("user_id"), HostID: v.Get("host_id"), Type: v.Get("type"), Cursor: v.Get("cursor")}
	bad := func(field, msg string) error {
		return &app.Error{Kind: app.KindBadRequest, Code: app.InvalidFieldCode(field), Field: field, Message: msg}
	}
	n, err := app.ParseLimit(v.Get("limit"), app.MaxEventLimit)
	if err != nil {
		return q, err
	}
	q.Limit = n
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		if s := v.Get(f.name); s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return q, bad(f.name, f.name+" must be an RFC 3339 time, e.g. 2026-03-01T00:00:00Z")
			}
			*f.dst = t.UTC()
		}
	}
	return q, nil
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	h, ok := s.svc.Health(r.Context())
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, h)
}

type loginInput struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

func (s *Server) login(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	var in loginInput
	if err := decode(w, r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := s.svc.Login(r.Context(), clientIP(r), in.Username, in.Password)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeSecret(w, http.StatusOK, res)
}
