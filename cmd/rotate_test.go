package cmd_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestRotateJWTSecretInPlace: only the ADMIN_JWT_SECRET line changes (every one of them, an
// exported one keeps its export), to 48 fresh [A-Za-z0-9] characters; the file ends 0600.
// Without such a line one is appended.
func TestRotateJWTSecretInPlace(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := filepath.Join(dir, "server.env")
	before := "# production\nHTTP_ADDR=:8080\nexport ADMIN_JWT_SECRET=old-secret-old-secret-old-secret-0\n\nLOG_LEVEL=debug # trailing\nADMIN_JWT_SECRET = 'also-old'\nPUBLIC_HOST=example.com"
	if err := os.WriteFile(f, []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd(nil, "rotate-jwt-secret", "--env-file", f)
	if code != 0 || !strings.Contains(out, "systemctl restart cloud-cli-proxy-control-plane") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	after := readFile(t, f)
	m := regexp.MustCompile(`(?m)^export ADMIN_JWT_SECRET=([A-Za-z0-9]{48})\n`).FindStringSubmatch(after)
	if m == nil {
		t.Fatalf("no new secret line:\n%s", after)
	}
	want := strings.NewReplacer("export ADMIN_JWT_SECRET=old-secret-old-secret-old-secret-0", "export ADMIN_JWT_SECRET="+m[1],
		"ADMIN_JWT_SECRET = 'also-old'", "ADMIN_JWT_SECRET="+m[1]).Replace(before)
	if after != want {
		t.Errorf("other lines changed:\n%q\nwant\n%q", after, want)
	}
	if strings.Contains(out+errOut, m[1]) {
		t.Error("the secret was printed")
	}
	if mode := fileMode(t, f); mode != 0o600 {
		t.Errorf("mode %o, want 600", mode)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	if code, _, _ := runCmd(nil, "rotate-jwt-secret", "--env-file", f); code != 0 || readFile(t, f) == after {
		t.Error("a second rotation did not change the secret")
	}

	bare := filepath.Join(dir, "bare.env")
	if err := os.WriteFile(bare, []byte("HTTP_ADDR=:8080"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCmd(nil, "rotate-jwt-secret", "--env-file", bare); code != 0 ||
		!regexp.MustCompile(`^HTTP_ADDR=:8080\nADMIN_JWT_SECRET=[A-Za-z0-9]{48}\n$`).MatchString(readFile(t, bare)) {
		t.Errorf("append: exit %d %s\n%q", code, errOut, readFile(t, bare))
	}
	if code, _, errOut := runCmd(nil, "rotate-jwt-secret", "--env-file", filepath.Join(dir, "missing.env")); code != 1 || !strings.Contains(errOut, "missing.env") {
		t.Errorf("missing file: exit %d %s", code, errOut)
	}
	if code, _, errOut := runCmd(nil, "rotate-jwt-secret"); code != 1 || !strings.Contains(errOut, "--env-file") {
		t.Errorf("no file: exit %d %s", code, errOut)
	}
}

// TestSeedJWTRotation follows the seed's "Key Rotation" procedure: a new ADMIN_JWT_SECRET in
// the env file, then a restart. Every JWT issued before is rejected, access tokens keep
// working, and logging in again works. Done twice: with rotate-jwt-secret, and by editing the
// file as the seed's steps 1-2 do.
func TestSeedJWTRotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	envFile := filepath.Join(t.TempDir(), "cloud-cli-proxy.env")
	if err := os.WriteFile(envFile, []byte("ADMIN_PASSWORD=admin-password\nADMIN_JWT_SECRET=first-secret-first-secret-first-secret-1\nBCRYPT_COST=4\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DATA_DIR": dir, "SSH_ADDR": "127.0.0.1:0", "SSH_PROXY_ADDR": "off", "HTTP_ADDR": "127.0.0.1:0", "ENV_FILE": envFile}

	s := startServe(t, env)
	jwt, code := s.login("admin", "admin-password")
	if code != 200 {
		t.Fatalf("login %d", code)
	}
	var tok struct {
		Token string `json:"token"`
	}
	if c := s.call("POST", "/v1/tokens", jwt, map[string]any{"name": "ci", "expires_in_days": 30, "write": true}, &tok); c != 201 || tok.Token == "" {
		t.Fatalf("token: %d", c)
	}

	for _, how := range []string{"rotate-jwt-secret", "edit the env file"} {
		if c, _ := s.me(jwt); c != 200 {
			t.Fatalf("%s: the JWT does not work before the rotation: %d", how, c)
		}
		if err := s.stop(); err != nil {
			t.Fatal(err)
		}
		if how == "rotate-jwt-secret" {
			if code, out, errOut := runCmd(nil, "rotate-jwt-secret", "--env-file", envFile); code != 0 {
				t.Fatalf("rotate: exit %d\n%s%s", code, out, errOut)
			}
		} else { // NEW_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '=+/' | head -c 48), then the line
			text := regexp.MustCompile(`(?m)^ADMIN_JWT_SECRET=.*$`).ReplaceAllString(readFile(t, envFile), "ADMIN_JWT_SECRET=Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5d2Fs")
			if err := os.WriteFile(envFile, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		s = startServe(t, env) // systemctl restart cloud-cli-proxy-control-plane
		if c, _ := s.me(jwt); c != 401 {
			t.Errorf("%s: a JWT issued before the rotation answered %d, want 401", how, c)
		}
		if c, name := s.me(tok.Token); c != 200 || name != "admin" {
			t.Errorf("%s: the access token answered %d %q, want 200", how, c, name)
		}
		if jwt, code = s.login("admin", "admin-password"); code != 200 {
			t.Fatalf("%s: login after the rotation: %d", how, code)
		}
	}
}
