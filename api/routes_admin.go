package api

import (
	"net/http"

	"github.com/julienschmidt/httprouter"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

func (s *Server) registerUserRoutes() {
	svc := s.svc
	s.handle("GET", "/v1/admin/users", accessAdminRead, reply(s, 200, func(r *http.Request, _ httprouter.Params, p app.Principal) (list[app.UserView], error) {
		us, err := svc.ListUsers(r.Context(), p)
		return list[app.UserView]{"users": us}, err
	}))
	s.handle("POST", "/v1/admin/users", accessAdminWrite, reply(s, 201, func(r *http.Request, _ httprouter.Params, p app.Principal) (app.UserView, error) {
		return withBody(nil, r, func(in app.CreateUserInput) (app.UserView, error) { return svc.CreateUser(r.Context(), p, in) })
	}))
	s.handle("GET", "/v1/admin/users/:id", accessAdminRead, reply(s, 200, func(r *http.Request, ps httprouter.Params, p app.Principal) (app.UserView, error) {
		return svc.GetUser(r.Context(), p, ps.ByName("id"))
	}))
	s.handle("PATCH", "/v1/admin/users/:id", accessAdminWrite, reply(s, 200, func(r *http.Request, ps httprouter.Params, p app.Principal) (app.UserView, error) {
		return withBody(nil, r, func(in app.PatchUserInput) (app.UserView, error) {
			return svc.PatchUser(r.Context(), p, ps.ByName("id"), in)
		})
	}))
	s.handle("DELETE", "/v1/admin/users/:id", accessAdminWrite, s.noContent(func(r *http.Request, ps httprouter.Params, p app.Principal) error {
		return svc.DeleteUser(r.Context(), p, ps.ByName("id"))
	}))
	s.handle("POST", "/v1/admin/users/:id/rotate-password", accessAdminWrite, replySecret(s, 200, func(r *http.Request, ps httprouter.Params, p app.Principal) (app.RotatePasswordResult, error) {
		return svc.RotatePassword(r.Context(), p, ps.ByName("id"))
	}))
	s.handle("PUT", "/v1/admin/users/:id/expiry", accessAdminWrite, reply(s, 200, func(r *http.Request, ps httprouter.Params, p app.Principal) (app.UserView, error) {
		return withBody(nil, r, func(in app.ExpiryInput) (app.UserView, error) {
			return svc.SetUserExpiry(r.Context(), p, ps.ByName("id"), in)
		})
	}))

	// Admin-managed SSH keys.
	s.handle("GET", "/v1/admin/users/:id/ssh-keys", accessAdminRead, reply(s, 200, func(r *http.Request, ps httprouter.Params, p app.Principal) (list[app.SSHKey], error) {
		ks, err := svc.AdminListSSHKeys(r.Context(), p, ps.ByName("id"))
		return list[app.SSHKey]{"keys": ks}, err
	}))
	s.handle("POST", "/v1/admin/users/:id/ssh-keys", accessAdminWrite, reply(s, 201, func(r *http.Request, ps httprouter.Params, p app.Principal) (app.SSHKey, error) {
		return withBody(nil, r, func(in app.AddKeyInput) (app.SSHKey, error) {
			return svc.AdminAddSSHKey(r.Context(), p, ps.ByName("id"), in)
		})
	}))
	s.handle("POST", "/v1/admin/users/:id/ssh-keys/generate", accessAdminWrite, replySecret(s, 201, func(r *http.Request, ps httprouter.Params, p app.Principal) (app.GeneratedKey, error) {
		return svc.AdminGenerateSSHKey(r.Context(), p, ps.ByName("id"))
	}))
	s.handle("DELETE", "/v1/admin/users/:id/ssh-keys/:keyID", accessAdminWrite, s.noContent(func(r *http.Request, ps httprouter.Params, p app.Principal) error {
		return svc.AdminDeleteSSHKey(r.Context(), p, ps.ByName("id"), ps.ByName("keyID"))
	}))
}

func (s *Server) registerEgressRoutes() {
	svc := s.svc
	s.handle("GET", "/v1/admin/egress-ips", accessAdminRead, reply(s, 200, func(r *http.Request, _ httprouter.Params, p app.Principal) (list[app.EgressView], error) {
		es, err := svc.ListEgress(r.Context(), p)
		return list[app.EgressView]{"egress_ips": es}, err
	}))
	s.handle("POST", "/v1/admin/egress-ips", accessAdminWrite, reply(s, 201, func(r *http.Request, _ httprouter.Params, p app.Principal) (app.EgressView, error) {
		return withBody(nil, r, func(in app.EgressInput) (app.EgressView, error) { return svc.CreateEgress(r.Context(), p, in) })
	}))
	s.handle("GET", "/v1/admin/egress-ips/:id", accessAdminRead, reply(s, 200, func(r *http.Request, ps httprouter.Params, p app.Principal) (app.EgressView, error) {
		return svc.GetEgress(r.Context(), p, ps.ByName("id"))
	}))
	s.handle("PUT", "/v1/admin/egress-ips/:id", accessAdminWrite, reply(s, 200, func(r *http.Request, ps httprouter.Params, p app.Principal) (app.EgressView, error) {
		return withBody(nil, r, func(in app.EgressInput) (app.EgressView, error) {
			return svc.UpdateEgress(r.Context(), p, ps.ByName("id"), in)
		})
	}))
	s.handle("DELETE", "/v1/admin/egress-ips/:id", accessAdminWrite, s.noContent(func(r *http.Request, ps httprouter.Params, p app.Principal) error {
		return svc.DeleteEgress(r.Context(), p, ps.ByName("id"))
	}))
	s.handle("POST", "/v1/admin/egress-ips/:id/test", accessAdminWrite, reply(s, 200, func(r *http.Request, ps httprouter.Params, p app.Principal) (app.EgressTestResult, error) {
		return svc.TestEgress(r.Context(), p, ps.ByName("id"))
	}))

	// Bindings.
	s.handle("GET", "/v1/admin/bindings", accessAdminRead, reply(s, 200, func(r *http.Request, _ httprouter.Params, p app.Principal) (list[app.Binding], error) {
		bs, err := svc.ListBindings(r.Context(), p)
		return list[app.Binding]{"bindings": bs}, err
	}))
	s.handle("POST", "/v1/admin/bindings", accessAdminWrite, reply(s, 201, func(r *http.Request, _ httprouter.Params, p app.Principal) (app.Binding, error) {
		return withBody(nil, r, func(in app.BindingInput) (app.Binding, error) { return svc.CreateBinding(r.Context(), p, in) })
	}))
	s.handle("DELETE", "/v1/admin/bindings/:id", accessAdminWrite, s.noContent(func(r *http.Request, ps httprouter.Params, p app.Principal) error {
		return svc.DeleteBinding(r.Context(), p, ps.ByName("id"))
	}))
}

func (s *Server) registerHostRoutes() {
	svc := s.svc
	// The full listing is large and read often (dashboards poll it): its encoding is kept
	// until the next write to the store.
	var hostsJSON encodedCache
	s.handle("GET", "/v1/admin/hosts", accessAdminRead, s.authed(func(w http.ResponseWriter, r *http.Request, _ httprouter.Params, p app.Principal) {
		hs, ver, err := svc.ListHostsVersioned(r.Context(), p)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		hostsJSON.write(w, ver, list[app.HostView]{"hosts": hs})
	}))
	s.handle("POST", "/v1/admin/hosts", accessAdminWrite, reply(s, 201, func(r *http.Request, _ httprouter.Params, p app.Principal) (app.HostCreated, error) {
		return withBody(nil, r, func(in app.CreateHostInput) (app.HostCreated, error) { return svc.CreateHost(r.Context(), p, in) })
	}))
	s.handle("GET", "/v1/admin/hosts/:id", accessAdminRead, reply(s, 200, func(r *http.Request, ps httprouter.Params, p app.Principal) (app.HostView, error) {
		return svc.GetHost(r.Context(), p, ps.ByName("id"))
	}))
	actions := map[string]string{
		"start": app.TaskHostStart, "stop": app.TaskHostStop, "rebuild": app.TaskHostRebuild,
		"rotate-ssh-password": app.TaskHostRotateSSH,
	}
	for path, kind := range actions {
		h := reply(s, 202, func(r *http.Request, ps httprouter.Params, p app.Principal) (app.HostActionResult, error) {
			return svc.HostAction(r.Context(), p, ps.ByName("id"), kind, false)
		})
		if kind == app.TaskHostRotateSSH {
			h = replySecret(s, 202, func(r *http.Request, ps httprouter.Params, p app.Principal) (app.HostActionResult, error) {
				return svc.HostAction(r.Context(), p, ps.ByName("id"), kind, false)
			})
		}
		s.handle("POST", "/v1/admin/hosts/:id/"+path, accessAdminWrite, h)
	}
	s.handle("DELETE", "/v1/admin/hosts/:id", accessAdminWrite, reply(s, 202, func(r *http.Request, ps httprouter.Params, p app.Principal) (app.HostActionResult, error) {
		keep := false
		switch r.URL.Query().Get("keep_home") {
		case "", "false", "0":
		case "true", "1":
			keep = true
		default:
			return app.HostActionResult{}, &app.Error{Kind: app.KindBadRequest, Code: app.CodeInvalidKeepHome, Field: "keep_home", Message: "keep_home must be true or false"}
		}
		return svc.HostAction(r.Context(), p, ps.ByName("id"), app.TaskHostDelete, keep)
	}))
	s.registerVNCRoutes()
}
