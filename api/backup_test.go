package api_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/storage"
)

// TestAdminBackupRoute: POST /v1/admin/backup streams a backup that verifies and restores,
// records backup.create, and refuses viewers with the usual JSON error.
func TestAdminBackupRoute(t *testing.T) {
	e := newEnv(t)
	e.user("backup-alice", "user")
	_, viewerJWT := e.user("backup-viewer", "viewer")

	r := e.raw("POST", "/v1/admin/backup", e.admin, nil)
	if r.Status != 200 || r.Header.Get("Content-Type") != "application/octet-stream" ||
		!strings.Contains(r.Header.Get("Content-Disposition"), ".ccpbak") || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("status %d, headers %v", r.Status, r.Header)
	}
	path := filepath.Join(t.TempDir(), "b.ccpbak")
	if err := os.WriteFile(path, r.Body, 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := storage.VerifyBackupFile(path, t.TempDir())
	if err != nil || h.SchemaVersion != storage.LatestSchemaVersion() {
		t.Fatalf("verify: %+v, %v", h, err)
	}
	dataDir := t.TempDir()
	if _, err := storage.Restore(path, dataDir, storage.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	db, err := storage.Open(filepath.Join(dataDir, storage.DBFileName), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.View(t.Context(), func(tx app.Tx) error {
		_, err := tx.GetUserByName("backup-alice")
		return err
	}); err != nil {
		t.Errorf("restored backup lacks the user: %v", err)
	}

	var page struct {
		Events []struct{ Action, Result, Message, ActorName string } `json:"events"`
	}
	e.do("GET", "/v1/admin/events?type=backup.create", e.admin, nil, 200, &page)
	if len(page.Events) != 1 || page.Events[0].Result != "success" || !strings.Contains(page.Events[0].Message, h.SHA256) {
		t.Errorf("audit: %+v (sha %s)", page.Events, h.SHA256)
	}

	v := e.raw("POST", "/v1/admin/backup", viewerJWT, nil)
	if v.Status != 403 || !bytes.Contains(v.Body, []byte(`"error"`)) {
		t.Errorf("viewer: %d %s", v.Status, v.Body)
	}
}
