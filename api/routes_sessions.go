package api

import (
	"net/http"

	"github.com/julienschmidt/httprouter"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// killResult is the answer of ending a user's sessions.
type killResult struct {
	Ended int `json:"ended"`
}

// registerSessionRoutes serves the open sessions app keeps (SSH shells, commands, forwards,
// TUI screens, desktops): listed for admins and their owner, ended by admins.
func (s *Server) registerSessionRoutes() {
	svc := s.svc
	s.handle("GET", "/v1/admin/sessions", accessAdminRead, reply(s, 200, func(r *http.Request, _ httprouter.Params, p app.Principal) (list[app.SessionInfo], error) {
		ss, err := svc.AdminListSessions(r.Context(), p, r.URL.Query().Get("user_id"))
		return list[app.SessionInfo]{"sessions": ss}, err
	}))
	s.handle("GET", "/v1/admin/users/:id/sessions", accessAdminRead, reply(s, 200, func(r *http.Request, ps httprouter.Params, p app.Principal) (list[app.SessionInfo], error) {
		if _, err := svc.GetUser(r.Context(), p, ps.ByName("id")); err != nil {
			return nil, err
		}
		ss, err := svc.AdminListSessions(r.Context(), p, ps.ByName("id"))
		return list[app.SessionInfo]{"sessions": ss}, err
	}))
	s.handle("DELETE", "/v1/admin/users/:id/sessions", accessAdminWrite, reply(s, 200, func(r *http.Request, ps httprouter.Params, p app.Principal) (killResult, error) {
		n, err := svc.KillUserSessions(r.Context(), p, ps.ByName("id"))
		return killResult{Ended: n}, err
	}))
	s.handle("GET", "/v1/user/sessions", accessAuth, reply(s, 200, func(r *http.Request, _ httprouter.Params, p app.Principal) (list[app.SessionInfo], error) {
		ss, err := svc.ListSessions(r.Context(), p)
		return list[app.SessionInfo]{"sessions": ss}, err
	}))
}
