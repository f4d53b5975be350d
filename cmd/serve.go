package cmd

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/api"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/runtime"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/storage"
)

// Main runs the command line and returns the process exit code.
func Main(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		args = []string{"serve"}
	}
	var err error
	switch args[0] {
	case "serve":
		err = Serve(ctx, args[1:], getenv, stdout, stderr, nil)
	case "backup":
		err = Backup(args[1:], getenv, stdout, stderr)
	case "config":
		printConfigTable(stdout)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, "usage: cloud-cli-proxy [serve|backup|config] [flags]\n  serve   run the server (default)\n  backup  copy the database of a stopped server to --out\n  config  print the configuration keys")
	default:
		err = fmt.Errorf("unknown command %q (serve, backup, config)", args[0])
	}
	if err != nil {
		fmt.Fprintln(stderr, "cloud-cli-proxy:", err)
		return 1
	}
	return 0
}

func printConfigTable(w io.Writer) {
	fmt.Fprintln(w, "| Key | Flag | Default | Meaning |\n|---|---|---|---|")
	for _, k := range Keys() {
		d := k.Default
		if d == "" {
			d = "(empty)"
		}
		fmt.Fprintf(w, "| `%s` | `--%s` | `%s` | %s |\n", k.Name, flagName(k.Name), d, k.Help)
	}
}

func newLogger(c Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// loadSecret returns the configured secret, or the one kept in the data dir, generating and
// saving it (0600) on first use.
func loadSecret(dir, name, configured string) ([]byte, error) {
	if configured != "" {
		return []byte(configured), nil
	}
	path := filepath.Join(dir, name)
	b, err := os.ReadFile(path)
	if err == nil {
		s := strings.TrimSpace(string(b))
		if len(s) < 32 {
			return nil, fmt.Errorf("%s holds a secret shorter than 32 characters", path)
		}
		return []byte(s), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	raw := make([]byte, 48)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	s := base64.RawURLEncoding.EncodeToString(raw)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := f.WriteString(s + "\n"); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	return []byte(s), f.Close()
}

// Ready is told the bound addresses once the server accepts connections (tests use it).
type Ready func(httpAddr string)

// Serve runs the server until ctx ends (SIGTERM/SIGINT in main), then drains requests, stops
// the workers and closes the database.
func Serve(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, ready Ready) error {
	c, err := LoadConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := newLogger(c, stderr)
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return fmt.Errorf("config DATA_DIR=%q: %w", c.DataDir, err)
	}
	jwtSecret, err := loadSecret(c.DataDir, "jwt_secret", c.JWTSecret)
	if err != nil {
		return fmt.Errorf("config ADMIN_JWT_SECRET: %w", err)
	}
	tokenKey, err := loadSecret(c.DataDir, "token_hash_key", "")
	if err != nil {
		return fmt.Errorf("token hash key: %w", err)
	}
	db, err := storage.Open(filepath.Join(c.DataDir, "cloud-cli-proxy.db"), storage.Options{MaxBatchDelay: 2 * time.Millisecond})
	if err != nil {
		return err
	}
	defer db.Close()

	rt, err := runtime.NewDocker(ctx, runtime.Config{})
	if err != nil {
		return fmt.Errorf("config RUNTIME=docker: %w", err)
	}
	svc, err := app.New(app.Config{
		JWTSecret: jwtSecret, JWTTTL: c.JWTTTL, BcryptCost: c.BcryptCost, ManagedImage: c.ManagedImage,
		PublicHost: c.PublicHost, SSHProxyPort: c.SSHProxyPort, UnboundNetwork: c.UnboundHostNetwork,
		TokenMaxLifetime: time.Duration(c.TokenMaxLifetimeDays) * 24 * time.Hour, TokenHashKey: tokenKey,
	}, app.Deps{Store: db, Runtime: rt, Logger: log})
	if err != nil {
		return err
	}
	pw, err := svc.EnsureAdmin(ctx, c.AdminUsername, c.AdminPassword)
	if err != nil {
		return fmt.Errorf("creating the administrator: %w", err)
	}
	if pw != "" && c.AdminPassword == "" {
		fmt.Fprintf(stdout, "\n  Administrator created: username %q password %q\n  This password is shown once; change it with POST /v1/user/change-password.\n\n", c.AdminUsername, pw)
	}

	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	waitWorkers, err := svc.Start(workCtx)
	if err != nil {
		return err
	}
	rest := api.New(svc, api.Config{RateLimitPerMinute: c.RateLimitPerMinute}, log)
	go rest.Sweep(workCtx)

	ln, err := net.Listen("tcp", c.HTTPAddr)
	if err != nil {
		return fmt.Errorf("config HTTP_ADDR=%q: %w", c.HTTPAddr, err)
	}
	srv := &http.Server{Handler: rest.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	log.Info("serving", "http", ln.Addr().String(), "data_dir", c.DataDir)
	if ready != nil {
		ready(ln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: draining requests")
	shutCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	stopWork()
	waitWorkers()
	log.Info("stopped; closing the database")
	return nil
}

// Backup copies the database of a stopped server to --out (a running server holds the lock).
func Backup(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var out string
	rest := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		switch {
		case args[i] == "--out" && i+1 < len(args):
			out = args[i+1]
			i++
		case strings.HasPrefix(args[i], "--out="):
			out = strings.TrimPrefix(args[i], "--out=")
		default:
			rest = append(rest, args[i])
		}
	}
	if out == "" {
		return fmt.Errorf("backup: --out FILE is required")
	}
	c, err := LoadConfig(rest, getenv, stderr)
	if err != nil {
		return err
	}
	db, err := storage.Open(filepath.Join(c.DataDir, "cloud-cli-proxy.db"), storage.Options{})
	if err != nil {
		return err
	}
	defer db.Close()
	n, err := storage.BackupFile(db, out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backup written: %s (%d bytes)\n", out, n)
	return nil
}
