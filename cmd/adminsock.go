package cmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

type peerUIDKey struct{}

// serveAdminSocket serves the local admin socket DATA_DIR/admin.sock (mode 0600, in a 0700
// directory): `cloud-cli-proxy backup` asks the running server for a snapshot through it.
// Only the server's own user and root may connect (checked again with SO_PEERCRED); requests
// act as app.LocalAdmin and are audited like any other. The caller holds the database lock,
// so a socket file already there is a dead server's and is replaced. It returns a function
// that closes the socket (removing the file) and waits for backups in progress up to ctx.
func serveAdminSocket(dataDir string, svc *app.Service, log *slog.Logger) (stop func(context.Context), err error) {
	path := filepath.Join(dataDir, AdminSocketName)
	if len(path) >= 108 { // sun_path
		return nil, fmt.Errorf("admin socket path %s is too long for a unix socket", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /backup", func(w http.ResponseWriter, r *http.Request) {
		uid, _ := r.Context().Value(peerUIDKey{}).(int)
		bw := &lazyStream{w: w}
		if _, err := svc.Backup(r.Context(), app.LocalAdmin(uid), bw); err != nil {
			log.Warn("backup through the admin socket failed", "err", err)
			if !bw.started {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			panic(http.ErrAbortHandler) // a broken transfer, not a short file
		}
	})
	self := os.Getuid()
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, peerUIDKey{}, peerUID(c))
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if uid, _ := r.Context().Value(peerUIDKey{}).(int); uid != self && uid != 0 {
				http.Error(w, "only the server's user or root may use the admin socket", http.StatusForbidden)
				return
			}
			mux.ServeHTTP(w, r)
		}),
	}
	go func() { _ = srv.Serve(ln) }()
	log.Info("serving", "admin_socket", path)
	return func(ctx context.Context) {
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
	}, nil
}

// peerUID is the uid of the process at the other end of a unix connection (-1 if unknown).
func peerUID(c net.Conn) int {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return -1
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return -1
	}
	uid := -1
	_ = raw.Control(func(fd uintptr) {
		if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			uid = int(cred.Uid)
		}
	})
	return uid
}

// lazyStream sends the response headers with the first byte.
type lazyStream struct {
	w       http.ResponseWriter
	started bool
}

func (l *lazyStream) Write(p []byte) (int, error) {
	if !l.started {
		l.started = true
		l.w.Header().Set("Content-Type", "application/octet-stream")
		l.w.WriteHeader(http.StatusOK)
	}
	return l.w.Write(p)
}
