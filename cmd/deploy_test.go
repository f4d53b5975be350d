package cmd_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/cmd"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/storage"
)

// asCLI makes this test binary act as the cloud-cli-proxy binary when the environment says
// so: deploy/scripts/backup.sh runs it through CLOUD_CLI_PROXY_BIN without a build.
const asCLI = "CLOUD_CLI_PROXY_TEST_AS_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(asCLI) == "1" {
		os.Exit(cmd.Main(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

const envExamplePath = "../deploy/systemd/cloud-cli-proxy.env.example"

// TestEnvExampleUpToDate: the example env file is exactly what `config --env-example` prints
// (every key of cmd.Keys with its help and default) and loads. UPDATE_ENV_EXAMPLE=1 rewrites it.
func TestEnvExampleUpToDate(t *testing.T) {
	want := cmd.EnvExample()
	if os.Getenv("UPDATE_ENV_EXAMPLE") == "1" {
		if err := os.WriteFile(envExamplePath, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(envExamplePath)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("%s is out of date with cmd.Keys(); regenerate it: UPDATE_ENV_EXAMPLE=1 go test ./cmd -run EnvExample", envExamplePath)
	}
	for _, k := range cmd.Keys() {
		if !regexp.MustCompile(`(?m)^#?` + k.Name + `=`).Match(got) {
			t.Errorf("the example lacks %s", k.Name)
		}
	}
	c, err := cmd.LoadConfig([]string{"--env-file", envExamplePath}, envOf(nil), &bytes.Buffer{})
	if err != nil || c.DataDir != "/var/lib/cloud-cli-proxy" {
		t.Fatalf("loading the example: %+v, %v", c.DataDir, err)
	}
	if code, out, _ := runCmd(nil, "config", "--env-example"); code != 0 || out != want {
		t.Errorf("config --env-example: exit %d", code)
	}
}

// TestDeployFiles: the unit, Dockerfile and compose file say what the README promises. (They
// are not run here: no systemd, and no registry to build images from.)
func TestDeployFiles(t *testing.T) {
	unit := readFile(t, "../deploy/systemd/cloud-cli-proxy-control-plane.service")
	for _, want := range []string{"EnvironmentFile=/etc/cloud-cli-proxy/cloud-cli-proxy.env", "Restart=on-failure",
		"StateDirectory=cloud-cli-proxy", "ExecStart=/usr/local/bin/cloud-cli-proxy serve", "NoNewPrivileges=yes",
		"ProtectSystem=strict", "DeviceAllow=/dev/net/tun rw", "RestrictNamespaces=net", "AF_NETLINK"} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	// Every capability kept is explained in a comment.
	m := regexp.MustCompile(`(?m)^CapabilityBoundingSet=(.*)$`).FindStringSubmatch(unit)
	if m == nil {
		t.Fatal("unit has no CapabilityBoundingSet")
	}
	for _, c := range strings.Fields(m[1]) {
		if !regexp.MustCompile(`(?m)^# ` + c + ` `).MatchString(unit) {
			t.Errorf("capability %s is kept without a comment saying why", c)
		}
	}
	docker := readFile(t, "../deploy/docker/server/Dockerfile")
	if strings.Count(docker, "\nFROM ") < 2 || !strings.Contains(docker, "CGO_ENABLED=0") || !strings.Contains(docker, "cmd.version=") {
		t.Error("Dockerfile is not a multi-stage static build that sets the version")
	}
	compose := readFile(t, "../deploy/compose.yaml")
	for _, want := range []string{"/var/run/docker.sock:/var/run/docker.sock", "NET_ADMIN", "/dev/net/tun", "network_mode: host", "pid: host"} {
		if !strings.Contains(compose, want) {
			t.Errorf("compose.yaml lacks %q", want)
		}
	}
}

// TestEverySubcommandHelps: each subcommand answers --help (and -h) with its usage, exit 0.
func TestEverySubcommandHelps(t *testing.T) {
	for _, c := range []string{"serve", "backup", "restore", "verify", "rotate-jwt-secret", "config", "check-service", "version"} {
		for _, h := range []string{"--help", "-h"} {
			code, out, errOut := runCmd(nil, c, h)
			if code != 0 || !strings.Contains(out+errOut, "-") || !strings.Contains(out+errOut, "sage") {
				t.Errorf("%s %s: exit %d\n%s%s", c, h, code, out, errOut)
			}
		}
		if code, out, errOut := runCmd(nil, "help", c); code != 0 || !strings.Contains(out+errOut, "sage") {
			t.Errorf("help %s: exit %d\n%s%s", c, code, out, errOut)
		}
	}
	code, out, _ := runCmd(nil, "help")
	if code != 0 {
		t.Errorf("help: exit %d", code)
	}
	for _, c := range []string{"backup", "restore", "verify", "rotate-jwt-secret", "version"} {
		if !strings.Contains(out, "  "+c+" ") {
			t.Errorf("help does not list %s:\n%s", c, out)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, errOut := runCmd(nil, "version")
	if code != 0 {
		t.Fatalf("version: exit %d %s", code, errOut)
	}
	for _, re := range []string{`(?m)^cloud-cli-proxy \S+$`, `(?m)^commit \S+$`, `(?m)^schema version ` + strconv.Itoa(storage.LatestSchemaVersion()) + `$`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("version output lacks %s:\n%s", re, out)
		}
	}
}

// TestBackupScript runs deploy/scripts/backup.sh as the seed does, with this test binary as
// the cloud-cli-proxy binary, against a running server: a verified backup in BACKUP_DIR, old
// backups pruned by RETENTION_DAYS, others kept; failures exit non-zero, say why, prune
// nothing. It is shellcheck-clean.
func TestBackupScript(t *testing.T) {
	t.Parallel()
	const script = "../deploy/scripts/backup.sh"
	if sc, err := exec.LookPath("shellcheck"); err == nil {
		if out, err := exec.Command(sc, script).CombinedOutput(); err != nil {
			t.Errorf("shellcheck %s: %v\n%s", script, err, out)
		}
	} else if os.Getenv("CI") == "true" {
		t.Error("shellcheck is missing (Debian package shellcheck; scripts/test.sh installs it)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	startServe(t, quietEnv(dataDir))
	envFile := filepath.Join(t.TempDir(), "server.env")
	if err := os.WriteFile(envFile, []byte("# the server's\nDATA_DIR="+dataDir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	backups := filepath.Join(t.TempDir(), "backups")
	if err := os.MkdirAll(backups, 0o700); err != nil {
		t.Fatal(err)
	}
	old := func(name string, age time.Duration) string {
		p := filepath.Join(backups, name)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		when := time.Now().Add(-age)
		if err := os.Chtimes(p, when, when); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tooOld := old("cloud-cli-proxy-20200101T000000Z.ccpbak", 31*24*time.Hour)
	recent := old("cloud-cli-proxy-20200102T000000Z.ccpbak", 29*24*time.Hour)
	unrelated := old("notes.txt", 100*24*time.Hour)

	run := func(env ...string) (int, string) {
		c := exec.Command("bash", script)
		c.Env = append([]string{"PATH=" + os.Getenv("PATH"), "CLOUD_CLI_PROXY_BIN=" + self, asCLI + "=1"}, env...)
		out, err := c.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}

	// The seed's "Customize" line, with the server's env file.
	code, out := run("BACKUP_DIR="+backups, "RETENTION_DAYS=30", "ENV_FILE="+envFile)
	if code != 0 {
		t.Fatalf("backup.sh: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(tooOld); !os.IsNotExist(err) {
		t.Errorf("a backup older than 30 days was kept\n%s", out)
	}
	for _, p := range []string{recent, unrelated} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was pruned: %v\n%s", p, err, out)
		}
	}
	made, _ := filepath.Glob(filepath.Join(backups, "cloud-cli-proxy-2*.ccpbak"))
	var fresh string
	for _, p := range made {
		if p != recent {
			fresh = p
		}
	}
	if len(made) != 2 || fresh == "" {
		t.Fatalf("backups after the run: %v\n%s", made, out)
	}
	if _, err := storage.VerifyBackupFile(fresh, t.TempDir()); err != nil {
		t.Errorf("the new backup: %v", err)
	}
	if !strings.Contains(out, "running server") || !strings.Contains(out, "OK") {
		t.Errorf("output:\n%s", out)
	}

	// Failures: nothing to back up; a bad RETENTION_DAYS; a missing binary. Each says why
	// and prunes nothing (the recent backup would go with RETENTION_DAYS=7).
	for _, c := range []struct {
		env  []string
		want string
	}{
		{[]string{"BACKUP_DIR=" + backups, "DATA_DIR=" + t.TempDir(), "ENV_FILE=/nonexistent"}, "no database"},
		{[]string{"BACKUP_DIR=" + backups, "RETENTION_DAYS=seven", "ENV_FILE=" + envFile}, "RETENTION_DAYS"},
		{[]string{"BACKUP_DIR=" + backups, "ENV_FILE=" + envFile, "CLOUD_CLI_PROXY_BIN=/nonexistent/cloud-cli-proxy"}, "binary not found"},
	} {
		code, out := run(c.env...)
		if code == 0 || !strings.Contains(out, c.want) || !strings.Contains(out, "backup.sh:") {
			t.Errorf("%v: exit %d, want non-zero saying %q\n%s", c.env, code, c.want, out)
		}
		if _, err := os.Stat(recent); err != nil {
			t.Errorf("a failed run pruned: %v", err)
		}
	}

	// Default retention (7 days) prunes the 29-day-old backup.
	if code, out := run("BACKUP_DIR="+backups, "ENV_FILE="+envFile); code != 0 {
		t.Fatalf("backup.sh: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(recent); !os.IsNotExist(err) {
		t.Errorf("RETENTION_DAYS=7 kept a 29-day-old backup")
	}
}
