package api

import (
	"fmt"
	"net/http"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

func (s *Server) registerPortalRoutes() {
	svc := s.svc
	s.handle("POST", "/v1/user/change-password", accessAuth, s.authed(func(w http.ResponseWriter, r *http.Request, _ httprouter.Params, p app.Principal) {
		var in app.ChangePasswordInput
		if err := decode(w, r, &in); err != nil {
			s.writeError(w, r, err)
			return
		}
		res, err := svc.ChangePassword(r.Context(), p, in)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		out := map[string]any{"status": "password_changed"}
		if res != nil {
			out["token"], out["expires_in"] = res.Token, res.ExpiresIn
		}
		writeSecret(w, http.StatusOK, out)
	}))
	s.handle("GET", "/v1/user/hosts", accessAuth, reply(s, 200, func(r *http.Request, _ httprouter.Params, p app.Principal) (list[app.HostView], error) {
		hs, err := svc.ListOwnHosts(r.Context(), p)
		return list[app.HostView]{"hosts": hs}, err
	}))
	s.handle("GET", "/v1/user/hosts/:id", accessAuth, reply(s, 200, func(r *http.Request, ps httprouter.Params, p app.Principal) (app.HostView, error) {
		return svc.GetOwnHost(r.Context(), p, ps.ByName("id"))
	}))
	s.handle("POST", "/v1/user/hosts/:id/rebuild", accessAuth, reply(s, 202, func(r *http.Request, ps httprouter.Params, p app.Principal) (app.HostActionResult, error) {
		return svc.RebuildOwnHost(r.Context(), p, ps.ByName("id"))
	}))
	s.handle("GET", "/v1/user/tasks/:id", accessAuth, reply(s, 200, func(r *http.Request, ps httprouter.Params, p app.Principal) (app.Task, error) {
		return svc.GetTask(r.Context(), p, ps.ByName("id"))
	}))
	s.handle("GET", "/v1/user/ssh-keys", accessAuth, reply(s, 200, func(r *http.Request, _ httprouter.Params, p app.Principal) (list[app.SSHKey], error) {
		ks, err := svc.ListSSHKeys(r.Context(), p, p.UserID)
		return list[app.SSHKey]{"keys": ks}, err
	}))
	s.handle("POST", "/v1/user/ssh-keys", accessAuth, reply(s, 201, func(r *http.Request, _ httprouter.Params, p app.Principal) (app.SSHKey, error) {
		return withBody(nil, r, func(in app.AddKeyInput) (app.SSHKey, error) { return svc.AddSSHKey(r.Context(), p, p.UserID, in) })
	}))
	s.handle("POST", "/v1/user/ssh-keys/generate", accessAuth, replySecret(s, 201, func(r *http.Request, _ httprouter.Params, p app.Principal) (app.GeneratedKey, error) {
		return svc.GenerateSSHKey(r.Context(), p, p.UserID)
	}))
	s.handle("DELETE", "/v1/user/ssh-keys/:keyID", accessAuth, s.noContent(func(r *http.Request, ps httprouter.Params, p app.Principal) error {
		return svc.DeleteSSHKey(r.Context(), p, p.UserID, ps.ByName("keyID"))
	}))
}

func (s *Server) registerTokenRoutes() {
	svc := s.svc
	s.handle("POST", "/v1/tokens", accessAuth, replySecret(s, 201, func(r *http.Request, _ httprouter.Params, p app.Principal) (app.CreatedToken, error) {
		return withBody(nil, r, func(in app.TokenInput) (app.CreatedToken, error) { return svc.CreateToken(r.Context(), p, in) })
	}))
	s.handle("GET", "/v1/tokens", accessAuth, reply(s, 200, func(r *http.Request, _ httprouter.Params, p app.Principal) (list[app.TokenView], error) {
		ts, err := svc.ListTokens(r.Context(), p)
		return list[app.TokenView]{"tokens": ts}, err
	}))
	s.handle("GET", "/v1/tokens/:id", accessAuth, reply(s, 200, func(r *http.Request, ps httprouter.Params, p app.Principal) (app.TokenView, error) {
		return svc.GetToken(r.Context(), p, ps.ByName("id"))
	}))
	s.handle("PATCH", "/v1/tokens/:id", accessAuth, reply(s, 200, func(r *http.Request, ps httprouter.Params, p app.Principal) (app.TokenView, error) {
		return withBody(nil, r, func(in app.TokenInput) (app.TokenView, error) {
			return svc.UpdateToken(r.Context(), p, ps.ByName("id"), in)
		})
	}))
	s.handle("DELETE", "/v1/tokens/:id", accessAuth, s.noContent(func(r *http.Request, ps httprouter.Params, p app.Principal) error {
		return svc.RevokeToken(r.Context(), p, ps.ByName("id"), false)
	}))
	s.handle("POST", "/v1/tokens/:id/regenerate", accessAuth, replySecret(s, 200, func(r *http.Request, ps httprouter.Params, p app.Principal) (app.CreatedToken, error) {
		return svc.RegenerateToken(r.Context(), p, ps.ByName("id"))
	}))
	s.handle("GET", "/v1/admin/tokens", accessAdminRead, reply(s, 200, func(r *http.Request, _ httprouter.Params, p app.Principal) (list[app.TokenView], error) {
		ts, err := svc.ListAllTokens(r.Context(), p, r.URL.Query().Get("user_id"))
		return list[app.TokenView]{"tokens": ts}, err
	}))
	s.handle("DELETE", "/v1/admin/tokens/:id", accessAdminWrite, s.noContent(func(r *http.Request, ps httprouter.Params, p app.Principal) error {
		return svc.RevokeToken(r.Context(), p, ps.ByName("id"), true)
	}))
	s.registerCompatTokenRoutes()
}

// compatView is a token in the name-addressed shape of /_/token (app.CompatTokenInput).
type compatView struct {
	ID             string     `json:"id"`
	Name           string     `json:"name"`
	ExpirationDate *int64     `json:"expiration_date"`
	Active         bool       `json:"active"`
	Write          bool       `json:"write"`
	Hint           string     `json:"hint"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
	LastUsedAt     *time.Time `json:"last_used_at"`
	Token          string     `json:"token,omitempty"`
}

func toCompat(t app.TokenView, value string) compatView {
	v := compatView{ID: t.ID, Name: t.Name, Active: t.Active, Write: t.Write, Hint: t.Hint, CreatedAt: t.CreatedAt,
		UpdatedAt: t.UpdatedAt, LastUsedAt: t.LastUsedAt, Token: value}
	if t.ExpiresAt != nil {
		ms := t.ExpiresAt.UnixMilli()
		v.ExpirationDate = &ms
	}
	return v
}

func (s *Server) registerCompatTokenRoutes() {
	svc := s.svc
	s.handle("POST", "/_/token", accessAuth, replySecret(s, 201, func(r *http.Request, _ httprouter.Params, p app.Principal) (compatView, error) {
		return withBody(nil, r, func(c app.CompatTokenInput) (compatView, error) {
			t, err := svc.CreateCompatToken(r.Context(), p, c)
			return toCompat(t.TokenView, t.Token), err
		})
	}))
	s.handle("GET", "/_/token", accessAuth, reply(s, 200, func(r *http.Request, _ httprouter.Params, p app.Principal) ([]compatView, error) {
		ts, err := svc.ListTokens(r.Context(), p)
		out := make([]compatView, 0, len(ts))
		for _, t := range ts {
			out = append(out, toCompat(t, ""))
		}
		return out, err
	}))
	s.handle("PUT", "/_/token", accessAuth, reply(s, 200, func(r *http.Request, _ httprouter.Params, p app.Principal) (compatView, error) {
		return withBody(nil, r, func(c app.CompatTokenInput) (compatView, error) {
			v, err := svc.UpdateCompatToken(r.Context(), p, c)
			return toCompat(v, ""), err
		})
	}))
	s.handle("DELETE", "/_/token", accessAuth, s.noContent(func(r *http.Request, _ httprouter.Params, p app.Principal) error {
		_, err := withBody(nil, r, func(c app.CompatTokenInput) (struct{}, error) {
			return struct{}{}, svc.RevokeCompatToken(r.Context(), p, c)
		})
		return err
	}))
	s.handle("GET", "/_/token/value", accessAuth, reply(s, 200, func(r *http.Request, _ httprouter.Params, p app.Principal) (struct{}, error) {
		name := r.URL.Query().Get("name")
		t, err := svc.GetTokenByName(r.Context(), p, name)
		if err != nil {
			return struct{}{}, err
		}
		return struct{}{}, &app.Error{Kind: app.KindGone, Code: app.CodeTokenValueUnavailable,
			Message: fmt.Sprintf("token values are shown once and stored only as a hash; regenerate it with POST /v1/tokens/%s/regenerate", t.ID)}
	}))
}
