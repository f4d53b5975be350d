package api

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/julienschmidt/httprouter"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

type passwordInput struct {
	Password string `json:"password"`
}

var shortIDRE = regexp.MustCompile(`^[a-z2-7]{8}$`)

func (s *Server) registerBootstrapRoutes() {
	svc := s.svc
	s.handle("GET", "/v1/bootstrap/script", accessPublic, func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
		writeScript(w, bootstrapScript(baseURL(r)))
	})
	s.handle("POST", "/v1/bootstrap/sessions", accessPublic, func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
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
		writeJSON(w, http.StatusAccepted, res)
	})
	s.handle("GET", "/v1/bootstrap/tasks/:id", accessPublic, func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		res, err := svc.BootstrapTask(r.Context(), ps.ByName("id"))
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	s.handle("GET", "/v1/bootstrap/tasks/:id/handoff", accessPublic, func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		res, err := svc.BootstrapHandoff(r.Context(), ps.ByName("id"))
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	s.handle("GET", "/entry/:shortId", accessPublic, func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		id := ps.ByName("shortId")
		if !shortIDRE.MatchString(id) {
			s.writeError(w, r, &app.Error{Kind: app.KindNotFound, Code: "not_found", Message: "no such entry link"})
			return
		}
		writeScript(w, entryScript(baseURL(r), id))
	})
	s.handle("POST", "/v1/entry/:shortId/auth", accessPublic, func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
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
		writeSecret(w, http.StatusOK, res)
	})
}

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

func writeScript(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "text/x-shellscript; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(body))
}

// bootstrapScript asks for a username and password, starts a bootstrap session, waits for
// its task and connects with ssh.
func bootstrapScript(base string) string {
	return fmt.Sprintf(`#!/usr/bin/env bash
# cloud-cli-proxy bootstrap: log in, wait for your workspace, connect over SSH.
set -euo pipefail
BASE=%q
json_get() { sed -n "s/.*\"$1\":\"\{0,1\}\([^\",}]*\).*/\1/p" | head -n1; }
read -rp "Username: " CCP_USER </dev/tty
read -rsp "Password: " CCP_PASS </dev/tty; echo
body=$(printf '{"username":"%%s","password":"%%s"}' "$CCP_USER" "$CCP_PASS")
resp=$(curl -sS -X POST "$BASE/v1/bootstrap/sessions" -H 'Content-Type: application/json' -d "$body")
task=$(printf '%%s' "$resp" | json_get task_id)
[ -n "$task" ] || { echo "login failed: $resp" >&2; exit 1; }
for i in $(seq 1 300); do
  st=$(curl -sS "$BASE/v1/bootstrap/tasks/$task" | json_get state)
  case "$st" in
    succeeded) break ;;
    failed) echo "workspace could not be prepared: $(curl -sS "$BASE/v1/bootstrap/tasks/$task")" >&2; exit 1 ;;
  esac
  sleep 1
done
h=$(curl -sS "$BASE/v1/bootstrap/tasks/$task/handoff")
exec ssh -p "$(printf '%%s' "$h" | json_get ssh_port)" "$(printf '%%s' "$h" | json_get ssh_user)@$(printf '%%s' "$h" | json_get ssh_host)"
`, base)
}

// entryScript asks for the owner's password of one host and connects with the SSH password
// the server hands out.
func entryScript(base, shortID string) string {
	return fmt.Sprintf(`#!/usr/bin/env bash
# cloud-cli-proxy entry link for host %s
set -euo pipefail
BASE=%q
json_get() { sed -n "s/.*\"$1\":\"\{0,1\}\([^\",}]*\).*/\1/p" | head -n1; }
read -rsp "Password: " CCP_PASS </dev/tty; echo
resp=$(curl -sS -X POST "$BASE/v1/entry/%s/auth" -H 'Content-Type: application/json' -d "$(printf '{"password":"%%s"}' "$CCP_PASS")")
user=$(printf '%%s' "$resp" | json_get ssh_user)
[ -n "$user" ] || { echo "authentication failed: $resp" >&2; exit 1; }
echo "SSH password (valid until the next entry login): $(printf '%%s' "$resp" | json_get ssh_pass)"
exec ssh -p "$(printf '%%s' "$resp" | json_get ssh_port)" "$user@$(printf '%%s' "$resp" | json_get ssh_host)"
`, shortID, base, shortID)
}
