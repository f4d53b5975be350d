package cmd

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/storage"
)

// AdminSocketName is the server's admin socket inside DATA_DIR (see serveAdminSocket).
const AdminSocketName = "admin.sock"

// backupFiles are the data dir's files a backup carries besides the database: without them
// a restored server would reject every access token (token_hash_key), every login session
// (jwt_secret) and greet SSH clients with a changed host key.
var backupFiles = []string{"jwt_secret", "token_hash_key", "ssh_host_ed25519_key"}

// newFlagSet is a subcommand's flag set whose -h prints synopsis, then the flags.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: cloud-cli-proxy %s\n\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// dataDirFlags adds --data-dir and --env-file and returns a function resolving DATA_DIR the
// way the server does (flag > environment > env file > default).
func dataDirFlags(fs *flag.FlagSet, getenv func(string) string, stderr io.Writer) func() (string, error) {
	dataDir := fs.String("data-dir", "", "data directory of the server (DATA_DIR; default from the environment, the env file, then ./data)")
	envFile := fs.String("env-file", "", "the server's env file of KEY=VALUE lines (ENV_FILE)")
	return func() (string, error) {
		var args []string
		if *envFile != "" {
			args = append(args, "--env-file", *envFile)
		}
		if *dataDir != "" {
			args = append(args, "--data-dir", *dataDir)
		}
		c, err := LoadConfig(args, getenv, stderr)
		return c.DataDir, err
	}
}

func parseNoArgs(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}

// socketClient is an HTTP client over the admin socket at path.
func socketClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableCompression: true,
	}}
}

// serverAnswers reports whether a server answers on the admin socket at path.
func serverAnswers(path string) bool {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// socketDenied is an error naming the fix when the admin socket exists but this user may
// not connect to it.
func socketDenied(path string) error {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err == nil {
		_ = c.Close()
		return nil
	}
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("backup: permission denied on the admin socket %s: run as the server's user or root (sudo)", path)
	}
	return nil
}

// Backup writes a backup of the server's database to --out ("-": standard output). With the
// server running it asks the server over its admin socket (a consistent snapshot taken while
// it serves); otherwise it reads the database file itself.
func Backup(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("backup", "backup --out FILE [--data-dir DIR] [--env-file FILE]\n\n"+
		"Writes a backup (compressed database snapshot, its secrets, schema version and checksum in a\n"+
		"header). A running server is asked through DATA_DIR/"+AdminSocketName+"; a stopped one's database is\n"+
		"read directly. Check it with `cloud-cli-proxy verify --from FILE`.", stderr)
	out := fs.String("out", "", "file to write (0600, replaced atomically); - writes to standard output")
	dataDir := dataDirFlags(fs, getenv, stderr)
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("backup: --out FILE is required")
	}
	dir, err := dataDir()
	if err != nil {
		return err
	}
	sock := filepath.Join(dir, AdminSocketName)
	via := "the stopped server's database " + filepath.Join(dir, storage.DBFileName)
	write := func(w io.Writer) (storage.BackupHeader, error) {
		if err := socketDenied(sock); err != nil {
			return storage.BackupHeader{}, err
		}
		if serverAnswers(sock) {
			via = "the running server (" + sock + ")"
			return backupThroughSocket(sock, w)
		}
		h, err := storage.BackupPath(context.Background(), filepath.Join(dir, storage.DBFileName), w,
			storage.BackupOptions{Program: programVersion(), Files: backupFiles})
		if errors.Is(err, storage.ErrServerRunning) {
			return h, fmt.Errorf("backup: a server holds the database but its admin socket %s does not answer; use POST /v1/admin/backup, or stop the server", sock)
		}
		if errors.Is(err, os.ErrNotExist) {
			return h, fmt.Errorf("backup: no database in %s (DATA_DIR; pass the server's --env-file or --data-dir)", dir)
		}
		return h, err
	}
	if *out == "-" {
		_, err := write(stdout)
		return err
	}
	h, n, err := writeBackupFile(*out, write)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backup written: %s (%d bytes, schema version %d, sha256 %s) from %s\n", *out, n, h.SchemaVersion, h.SHA256, via)
	return nil
}

// backupThroughSocket asks the server for a backup and copies it to w. The header is read
// back from the stream, and a transfer the server aborted is an error.
func backupThroughSocket(sock string, w io.Writer) (storage.BackupHeader, error) {
	res, err := socketClient(sock).Post("http://admin.sock/backup", "", nil)
	if err != nil {
		return storage.BackupHeader{}, fmt.Errorf("backup through %s: %w", sock, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		return storage.BackupHeader{}, fmt.Errorf("backup through %s: %s: %s", sock, res.Status, strings.TrimSpace(string(msg)))
	}
	br := bufio.NewReaderSize(res.Body, 1<<20)
	pr, pw := io.Pipe()
	hc := make(chan error, 1)
	var h storage.BackupHeader
	go func() {
		var err error
		h, err = storage.ReadBackupHeader(bufio.NewReader(pr))
		hc <- err
		_, _ = io.Copy(io.Discard, pr)
	}()
	_, err = io.Copy(io.MultiWriter(w, pw), br)
	pw.CloseWithError(err)
	if herr := <-hc; err == nil && herr != nil {
		err = herr
	}
	if err != nil {
		return h, fmt.Errorf("backup through %s: %w", sock, err)
	}
	return h, nil
}

// writeBackupFile writes a backup to path atomically and returns its header and size.
func writeBackupFile(path string, fn func(io.Writer) (storage.BackupHeader, error)) (h storage.BackupHeader, n int64, err error) {
	n, err = writeFileAtomic(path, nil, func(w io.Writer) error {
		var err error
		h, err = fn(w)
		return err
	}, nil)
	if err != nil {
		return h, 0, err
	}
	return h, n, nil
}

// Restore restores a backup into the data dir of a stopped server.
func Restore(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("restore", "restore --from FILE [--data-dir DIR] [--env-file FILE] [--db-only]\n\n"+
		"Restores a backup into the data dir of a STOPPED server. The whole file is verified first\n"+
		"(checksum, structure, database check); a corrupt file, a file from a newer schema or a running\n"+
		"server is refused and nothing changes. Each replaced file is kept aside as NAME.pre-restore-TIME.", stderr)
	from := fs.String("from", "", "backup file to restore")
	dbOnly := fs.Bool("db-only", false, "restore only the database; keep the data dir's secrets (JWT secret, token hash key, SSH host key)")
	dataDir := dataDirFlags(fs, getenv, stderr)
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *from == "" {
		return errors.New("restore: --from FILE is required")
	}
	dir, err := dataDir()
	if err != nil {
		return err
	}
	if sock := filepath.Join(dir, AdminSocketName); serverAnswers(sock) {
		return fmt.Errorf("restore: the server is running (it answers on %s); stop it first (systemctl stop cloud-cli-proxy-control-plane)", sock)
	}
	res, err := storage.Restore(*from, dir, storage.RestoreOptions{DBOnly: *dbOnly})
	if err != nil {
		return fmt.Errorf("restore %s: %w", *from, err)
	}
	fmt.Fprintf(stdout, "restored %s (schema version %d, taken %s) into %s\n", *from, res.Header.SchemaVersion, res.Header.CreatedAt.Format(time.RFC3339), dir)
	for _, p := range res.Restored {
		fmt.Fprintf(stdout, "  restored %s\n", p)
	}
	for old, aside := range res.KeptAs {
		fmt.Fprintf(stdout, "  kept the previous %s as %s\n", filepath.Base(old), aside)
	}
	if res.Header.SchemaVersion < storage.LatestSchemaVersion() {
		fmt.Fprintf(stdout, "  the database is migrated from schema version %d to %d when the server starts\n", res.Header.SchemaVersion, storage.LatestSchemaVersion())
	}
	return nil
}

// Verify checks a backup completely without restoring it.
func Verify(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("verify", "verify --from FILE [--tmp-dir DIR]\n\n"+
		"Checks a backup without restoring it: header, checksum, structure and the database (extracted\n"+
		"into a temporary directory that is removed again). Exits 1 when anything is wrong.", stderr)
	from := fs.String("from", "", "backup file to check")
	tmpDir := fs.String("tmp-dir", "", "where to extract the database while checking it (default: the system's temporary directory)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *from == "" {
		return errors.New("verify: --from FILE is required")
	}
	h, err := storage.VerifyBackupFile(*from, *tmpDir)
	if err != nil {
		return fmt.Errorf("verify %s: %w", *from, err)
	}
	fmt.Fprintf(stdout, "%s: OK\n  schema version %d (this program: %d)\n  taken %s by %s\n  database %d bytes, sha256 %s\n  files %s\n",
		*from, h.SchemaVersion, storage.LatestSchemaVersion(), h.CreatedAt.Format(time.RFC3339), orUnknown(h.Program), h.DBSize, h.SHA256, strings.Join(h.Files, ", "))
	return nil
}

func orUnknown(s string) string {
	if s == "" {
		return "an unknown version"
	}
	return s
}
