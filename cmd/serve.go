package cmd

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/api"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/metrics"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/runtime"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/sshd"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/storage"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/tunnel"
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
	case "restore":
		err = Restore(args[1:], getenv, stdout, stderr)
	case "verify":
		err = Verify(args[1:], stdout, stderr)
	case "rotate-jwt-secret":
		err = RotateJWTSecret(args[1:], getenv, stdout, stderr)
	case "config":
		err = ConfigCommand(args[1:], stdout, stderr)
	case "check-service":
		err = CheckService(args[1:], stdout, stderr)
	case "errors":
		err = ErrorsCommand(args[1:], stdout, stderr)
	case "version", "--version":
		err = Version(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		if len(args) > 1 && args[1] != "help" && !strings.HasPrefix(args[1], "-") {
			return Main(ctx, []string{args[1], "--help"}, getenv, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
	default:
		err = fmt.Errorf("unknown command %q (%s; cloud-cli-proxy help)", args[0], strings.Join(commands, ", "))
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0 // the flag package already printed the usage
	}
	if err != nil {
		fmt.Fprintln(stderr, "cloud-cli-proxy:", err)
		return 1
	}
	return 0
}

// commands are the subcommands; each answers --help.
var commands = []string{"serve", "backup", "restore", "verify", "rotate-jwt-secret", "config", "errors", "check-service", "version"}

const usage = `usage: cloud-cli-proxy COMMAND [flags]   (COMMAND --help describes one)

  serve              run the server (default)
  backup             write a backup (works while the server runs: through DATA_DIR/admin.sock)
  restore            restore a backup into a stopped server's data dir
  verify             check a backup without restoring it
  rotate-jwt-secret  write a new ADMIN_JWT_SECRET into an env file
  config             print the configuration keys (--env-example: an env file of them all)
  errors             print the error codes (the README's table)
  check-service      run the egress check service (what-is-my-IP + logging DNS zone)
  version            print the version, commit and database schema version
`

// ConfigCommand prints the configuration table, or with --env-example the example env file.
func ConfigCommand(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("config", "config [--env-example]\n\nPrints every configuration key (Markdown table), or an env file of them all.", stderr)
	example := fs.Bool("env-example", false, "print an env file with every key, its meaning and default (deploy/systemd/cloud-cli-proxy.env.example)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *example {
		fmt.Fprint(stdout, EnvExample())
		return nil
	}
	printConfigTable(stdout)
	return nil
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
// saving it (0600) on first use. The file appears atomically and complete (written to a
// temporary file, fsynced, then hard-linked into place), so a crash mid-write cannot leave an
// empty or short secret that would stop every later start; if another process created it
// first, that one is used.
func loadSecret(dir, name, configured string) ([]byte, error) {
	if configured != "" {
		return []byte(configured), nil
	}
	path := filepath.Join(dir, name)
	if s, err := readSecret(path); !errors.Is(err, os.ErrNotExist) {
		return s, err
	}
	raw := make([]byte, 48)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	s := base64.RawURLEncoding.EncodeToString(raw)
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return nil, err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.WriteString(s + "\n")
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	// Link, unlike rename, fails when path exists: a concurrent first start keeps its secret.
	if err := os.Link(tmp, path); errors.Is(err, os.ErrExist) {
		return readSecret(path)
	} else if err != nil {
		// A file system without hard links: rename is atomic too, only not exclusive.
		if err := os.Rename(tmp, path); err != nil {
			return nil, err
		}
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the new name durable; best effort
		_ = d.Close()
	}
	return []byte(s), nil
}

func readSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := strings.TrimSpace(string(b))
	if len(s) < 32 {
		return nil, fmt.Errorf("%s holds a secret shorter than 32 characters", path)
	}
	return []byte(s), nil
}

// Ready is told the bound addresses once the server accepts connections (tests use it).
type Ready func(httpAddr string)

// Serve runs the server until ctx ends (SIGTERM/SIGINT in main), then drains requests, stops
// the workers and closes the database.
func Serve(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, ready Ready) (err error) {
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
	defer func() {
		if cerr := db.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("closing the database: %w", cerr)
		}
	}()
	db.SetBackupFiles(programVersion(), backupFiles...)

	rt, err := runtime.NewDocker(ctx, runtime.Config{RegistryAuthFile: c.RegistryAuthFile})
	if err != nil {
		return fmt.Errorf("config RUNTIME=docker: %w", err)
	}
	defer rt.Close()
	// One cheap engine call (a container list filtered on a host id that matches nothing)
	// before the workers start. It reports an unreachable engine up front, and it settles the
	// Docker client's API-version negotiation while nothing else uses the client: the client
	// negotiates on first use without synchronising that with concurrent first requests (a
	// data race between the reconciler's List and the event stream's subscription).
	warmCtx, cancelWarm := context.WithTimeout(ctx, 5*time.Second)
	if _, err := rt.Inspect(warmCtx, "start-up-probe"); err != nil {
		log.Warn("container engine not reachable; hosts cannot change state until it is", "err", err)
	}
	cancelWarm()
	tun := tunnel.NewManager(tunnel.Config{CheckServerURL: c.EgressCheckServerURL, CheckDNSZone: c.EgressCheckDNSZone,
		CheckURL: c.EgressCheckURL, ProxyDNSServer: c.EgressProxyDNSServer, Logger: log})
	defer tun.Close()
	mtr := metrics.New()
	svc, err := app.New(app.Config{
		JWTSecret: jwtSecret, JWTTTL: c.JWTTTL, BcryptCost: c.BcryptCost, ManagedImage: c.ManagedImage, ImagePullPolicy: c.ImagePullPolicy,
		PublicHost: c.PublicHost, SSHProxyPort: c.SSHProxyPort, UnboundNetwork: c.UnboundHostNetwork,
		TokenMaxLifetime: time.Duration(c.TokenMaxLifetimeDays) * 24 * time.Hour, TokenHashKey: tokenKey,
		EventRetention: time.Duration(c.EventRetentionDays) * 24 * time.Hour,
		TaskRetention:  time.Duration(c.TaskRetentionDays) * 24 * time.Hour,
		// EGRESS_RECHECK_INTERVAL=0 disables the checks; app's 0 would mean its default.
		EgressRecheckInterval: c.egressRecheck(),
		MaxSessionsPerUser:    c.SSHMaxSessionsPerUser,
	}, app.Deps{Store: db, Runtime: rt, Tunnel: tun, Logger: log, Observer: mtr})
	if err != nil {
		return err
	}
	mtr.WatchState(svc, fileSize(db.Path()))
	stopMetrics, err := serveMetrics(c, mtr, log)
	if err != nil {
		return err
	}
	defer stopMetrics(context.Background())
	svc.CheckManagedImage(ctx)
	// Bind before creating anything: a busy port must not create the administrator (and show
	// its password) or start workers only to fail.
	ln, err := net.Listen("tcp", c.HTTPAddr)
	if err != nil {
		return fmt.Errorf("config HTTP_ADDR=%q: %w", c.HTTPAddr, err)
	}
	defer ln.Close() // no-op once srv.Serve owns it
	var doorLn, gwLn net.Listener
	if c.SSHAddr != "" {
		if doorLn, err = net.Listen("tcp", c.SSHAddr); err != nil {
			return fmt.Errorf("config SSH_ADDR=%q: %w", c.SSHAddr, err)
		}
		defer doorLn.Close()
	}
	gwAddr := c.SSHProxyAddr
	if gwAddr == "" {
		gwAddr = ":" + strconv.Itoa(c.SSHProxyPort)
	}
	if gwAddr != "off" {
		if gwLn, err = net.Listen("tcp", gwAddr); err != nil {
			return fmt.Errorf("config SSH_PROXY_ADDR/SSH_PROXY_PORT=%q: %w", gwAddr, err)
		}
		defer gwLn.Close()
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
	acfg := api.Config{RateLimitPerMinute: c.RateLimitPerMinute, Metrics: mtr}
	if c.metricsOnAPI() {
		acfg.MetricsHandler = mtr.Handler()
	}
	rest := api.New(svc, acfg, log)
	go rest.Sweep(workCtx)
	// The local admin socket for `cloud-cli-proxy backup` while the server runs.
	if stopSock, err := serveAdminSocket(c.DataDir, svc, log); err != nil {
		log.Warn("admin socket not available: `cloud-cli-proxy backup` cannot reach this server (POST /v1/admin/backup can)", "err", err)
	} else {
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			stopSock(sctx)
		}()
	}

	srv := &http.Server{Handler: rest.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	log.Info("serving", "http", ln.Addr().String(), "data_dir", c.DataDir)
	if ready != nil {
		ready(ln.Addr().String())
	}
	errc := make(chan error, 3)
	go func() { errc <- srv.Serve(ln) }()
	var door *sshd.Door
	var gw *sshd.Gateway
	if doorLn != nil || gwLn != nil {
		signer, _, err := sshd.LoadOrCreateHostKey(c.DataDir)
		if err != nil {
			return err
		}
		// The gateway also serves the door's Connect: enter on a host in the TUI opens its
		// shell in the same session, through the gateway's checks and bridge.
		gw, err = sshd.NewGateway(svc, sshd.GatewayConfig{HostSigner: signer, Logger: log, Ciphers: c.gatewayCiphers(),
			LoginGrace: c.SSHLoginGrace, MaxUnauthPerIP: c.SSHMaxUnauthPerIP})
		if err != nil && gwLn != nil {
			return err
		}
		if err != nil {
			log.Warn("ssh door: connecting to hosts from the TUI is not available", "err", err)
			gw = nil
		}
		if gwLn != nil {
			go func() {
				if err := gw.Serve(gwLn); err != nil && !errors.Is(err, sshd.ErrGatewayClosed) {
					errc <- fmt.Errorf("ssh gateway: %w", err)
				}
			}()
			log.Info("serving", "ssh_gateway", gwLn.Addr().String())
		}
		if doorLn != nil {
			dcfg := sshd.DoorConfig{HostSigner: signer, Logger: log, LoginGrace: c.SSHLoginGrace, MaxUnauthPerIP: c.SSHMaxUnauthPerIP}
			if gw != nil {
				dcfg.Connect = gw.Shell
			}
			if door, err = sshd.NewDoor(svc, dcfg); err != nil {
				return err
			}
			go func() {
				if err := door.Serve(doorLn); err != nil {
					errc <- fmt.Errorf("ssh door: %w", err)
				}
			}()
			log.Info("serving", "ssh_door", doorLn.Addr().String())
		}
	}
	var serveErr error
	select {
	case serveErr = <-errc:
		log.Error("http server stopped", "err", serveErr)
	case <-ctx.Done():
		log.Info("shutting down: draining requests")
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		log.Warn("shutdown: requests still running after 20s; closing their connections", "err", err)
		_ = srv.Close()
	}
	// Tell every open session (SSH shells, commands, forwards, TUI screens, desktops) that
	// the server is going down, and end it, before the SSH servers drain.
	if n := svc.EndAllSessions(shutCtx); n > 0 {
		log.Info("shutdown: ended open sessions", "count", n)
	}
	if door != nil {
		_ = door.Shutdown(shutCtx)
	}
	if gw != nil {
		_ = gw.Shutdown(shutCtx)
	}
	stopWork()
	waitWorkers()
	log.Info("stopped; closing the database")
	return serveErr
}
