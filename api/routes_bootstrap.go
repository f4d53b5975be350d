package api

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

type passwordInput struct {
	Password string `json:"password"`
}

var shortIDRE = regexp.MustCompile(`^[a-z2-7]{8}$`)

// The bootstrap and entry routes are public: a bootstrap session is opened with the user's
// password and answers, with the task, a secret; the task's status and handoff answer only a
// request carrying that secret (Authorization: Bearer SECRET). Each JSON answer is also
// offered as lines of KEY=VALUE (?format=shell), which the served scripts read without a JSON
// parser.
func (s *Server) registerBootstrapRoutes() {
	svc := s.svc
	s.handle("GET", "/v1/bootstrap/script", accessPublic, func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
		s.serveScript(w, r, "bootstrap.sh.tmpl", scriptData{Base: baseURL(r)})
	})
	s.handle("POST", "/v1/bootstrap/sessions", accessPublic, func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
		shell, err := shellFormat(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		var in loginInput
		if err := decode(w, r, &in); err != nil {
			s.writeError(w, r, err)
			return
		}
		res, err := svc.CreateBootstrapSession(r.Context(), clientIP(r), in.Username, in.Password)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		statusURL := bootstrapTaskPath(res.TaskID)
		if shell {
			writeShellLines(w, http.StatusAccepted, []kv{{"task_id", res.TaskID}, {"host_id", res.HostID},
				{"status", res.Status.String()}, {"status_url", statusURL}, {"secret", res.Secret},
				{"expires_at", res.ExpiresAt.UTC().Format(time.RFC3339)}})
			return
		}
		writeSecret(w, http.StatusAccepted, struct {
			app.BootstrapSession
			StatusURL string `json:"status_url"`
		}{res, statusURL})
	})
	s.handle("GET", "/v1/bootstrap/tasks/:id", accessPublic, func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		shell, err := shellFormat(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		res, err := svc.BootstrapTask(r.Context(), ps.ByName("id"), bearerCredential(r))
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		handoff := bootstrapTaskPath(res.ID) + "/handoff"
		if shell {
			lines := []kv{{"id", res.ID}, {"kind", res.Kind}, {"state", res.State.String()}}
			if n := len(res.Steps); n > 0 {
				lines = append(lines, kv{"step", res.Steps[n-1].Name}, kv{"step_state", res.Steps[n-1].State})
			}
			if res.Error != nil {
				lines = append(lines, kv{"error_code", res.Error.Code.String()}, kv{"error_message", res.Error.Message})
			}
			if res.HandoffReady {
				lines = append(lines, kv{"handoff_url", handoff})
			}
			writeShellLines(w, http.StatusOK, lines)
			return
		}
		body := struct {
			app.BootstrapTaskStatus
			Handoff string `json:"handoff_url,omitempty"`
		}{BootstrapTaskStatus: res}
		if res.HandoffReady {
			body.Handoff = handoff
		}
		writeJSON(w, http.StatusOK, body)
	})
	s.handle("GET", "/v1/bootstrap/tasks/:id/handoff", accessPublic, func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		shell, err := shellFormat(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		res, err := svc.BootstrapHandoff(r.Context(), ps.ByName("id"), bearerCredential(r))
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.writeHandoff(w, shell, res)
	})
	s.handle("GET", "/entry/:shortId", accessPublic, func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		id := ps.ByName("shortId")
		if !shortIDRE.MatchString(id) {
			s.writeError(w, r, &app.Error{Kind: app.KindNotFound, Code: app.CodeNotFound, Message: "no such entry link"})
			return
		}
		s.serveScript(w, r, "entry.sh.tmpl", scriptData{Base: baseURL(r), ShortID: id})
	})
	s.handle("POST", "/v1/entry/:shortId/auth", accessPublic, func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		shell, err := shellFormat(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		var in passwordInput
		if err := decode(w, r, &in); err != nil {
			s.writeError(w, r, err)
			return
		}
		res, err := svc.EntryAuth(r.Context(), clientIP(r), ps.ByName("shortId"), in.Password)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.writeHandoff(w, shell, res)
	})
}

func (s *Server) writeHandoff(w http.ResponseWriter, shell bool, h app.Handoff) {
	if !shell {
		writeSecret(w, http.StatusOK, h)
		return
	}
	lines := []kv{{"ssh_host", h.SSHHost}, {"ssh_port", strconv.Itoa(h.SSHPort)}, {"ssh_user", h.SSHUser}}
	if h.SSHPass != "" {
		lines = append(lines, kv{"ssh_pass", h.SSHPass})
	}
	writeShellLines(w, http.StatusOK, append(lines, kv{"command", h.Command}))
}

// baseURL is the server's address as the client reached it, for the served scripts. A Host
// header with characters no host name has falls back to localhost:8080 (the scripts quote it
// either way).
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	host := r.Host
	if host == "" || strings.ContainsAny(host, " \"'`$\\;&|<>") {
		host = "localhost:8080"
	}
	return scheme + "://" + host
}

// bootstrapTaskPath is the address of a bootstrap task's status (REST addresses are the
// REST door's, never app's).
func bootstrapTaskPath(taskID string) string { return "/v1/bootstrap/tasks/" + taskID }
