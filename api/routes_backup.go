package api

import (
	"net/http"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// registerBackupRoutes serves POST /v1/admin/backup: a backup of the live database (one read
// transaction), streamed as it is made. Authorization happens before the first byte, so a
// refusal is the usual JSON error; a failure after that aborts the response, so the client
// sees a broken transfer rather than a short file (which `verify` would refuse anyway).
func (s *Server) registerBackupRoutes() {
	s.handle("POST", "/v1/admin/backup", accessAdminWrite, s.authed(func(w http.ResponseWriter, r *http.Request, _ httprouter.Params, p app.Principal) {
		bw := &backupWriter{w: w}
		if _, err := s.svc.Backup(r.Context(), p, bw); err != nil {
			if !bw.started {
				s.writeError(w, r, err)
				return
			}
			s.log.Warn("backup stream failed", "err", err)
			panic(http.ErrAbortHandler)
		}
	}))
}

// backupWriter sends the response headers with the first byte.
type backupWriter struct {
	w       http.ResponseWriter
	started bool
}

func (b *backupWriter) Write(p []byte) (int, error) {
	if !b.started {
		b.started = true
		h := b.w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Disposition", `attachment; filename="cloud-cli-proxy-`+time.Now().UTC().Format("20060102T150405Z")+`.ccpbak"`)
		b.w.WriteHeader(http.StatusOK)
	}
	return b.w.Write(p)
}
