package cmd_test

import (
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/cmd"
)

// envOf is a getenv over a map: the tests never read the real environment.
func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// writeEnvFile writes content to a fresh file and returns its path.
func writeEnvFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "test.env")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfigDefaults(t *testing.T) {
	c, err := cmd.LoadConfig(nil, envOf(nil), io.Discard)
	if err != nil {
		t.Fatalf("LoadConfig with nothing set: %v", err)
	}
	want := cmd.Config{
		AdminUsername:         "admin",
		AdminPassword:         "",
		JWTSecret:             "",
		DataDir:               "./data",
		HTTPAddr:              ":8080",
		SSHAddr:               ":22",
		SSHProxyPort:          2222,
		SSHGatewayCiphers:     "aes128-gcm@openssh.com,aes256-gcm@openssh.com",
		SSHMaxSessionsPerUser: 10,
		SSHLoginGrace:         30 * time.Second,
		SSHMaxUnauthPerIP:     20,
		LogFormat:             "text",
		LogLevel:              "info",
		RateLimitPerMinute:    120,
		BcryptCost:            10,
		ManagedImage:          "cloud-cli-proxy/managed:latest",
		ImagePullPolicy:       "missing",
		PublicHost:            "localhost",
		UnboundHostNetwork:    "none",
		JWTTTL:                12 * time.Hour,
		TokenMaxLifetimeDays:  0,
		EventRetentionDays:    365,
		TaskRetentionDays:     90,
		Runtime:               "docker",
		EgressRecheckInterval: 5 * time.Minute,
		EgressProxyDNSServer:  netip.MustParseAddr("1.1.1.1"),
	}
	if c != want {
		t.Errorf("defaults:\n got %+v\nwant %+v", c, want)
	}

	// Every key's documented default is accepted as an explicit value and changes nothing.
	env := map[string]string{}
	for _, k := range cmd.Keys() {
		if k.Default != "" {
			env[k.Name] = k.Default
		}
	}
	c2, err := cmd.LoadConfig(nil, envOf(env), io.Discard)
	if err != nil {
		t.Fatalf("defaults given explicitly: %v", err)
	}
	if c2 != want {
		t.Errorf("defaults given explicitly:\n got %+v\nwant %+v", c2, want)
	}
}

// TestLoadConfigPrecedence checks flags > environment > env file > defaults, key by key.
func TestLoadConfigPrecedence(t *testing.T) {
	type want struct {
		level string
		cost  int
		addr  string
	}
	def := want{"info", 10, ":8080"}
	cases := []struct {
		name  string
		file  string // env file content; "" means no env file
		env   map[string]string
		flags []string
		want  want
	}{
		{name: "defaults", want: def},
		{name: "file beats defaults",
			file: "LOG_LEVEL=warn\nBCRYPT_COST=5\n",
			want: want{"warn", 5, ":8080"}},
		{name: "environment beats file",
			file: "LOG_LEVEL=warn\nBCRYPT_COST=5\n",
			env:  map[string]string{"LOG_LEVEL": "error"},
			want: want{"error", 5, ":8080"}},
		{name: "flag beats environment and file",
			file:  "LOG_LEVEL=warn\nBCRYPT_COST=5\nHTTP_ADDR=:1\n",
			env:   map[string]string{"LOG_LEVEL": "error", "BCRYPT_COST": "6"},
			flags: []string{"--log-level=debug"},
			want:  want{"debug", 6, ":1"}},
		{name: "flag beats environment without a file",
			env:   map[string]string{"BCRYPT_COST": "6", "HTTP_ADDR": ":2"},
			flags: []string{"-bcrypt-cost", "7"},
			want:  want{"info", 7, ":2"}},
		{name: "flag beats file",
			file:  "HTTP_ADDR=:1\n",
			flags: []string{"--http-addr", "127.0.0.1:3"},
			want:  want{"info", 10, "127.0.0.1:3"}},
		{name: "each key takes its own highest source",
			file:  "LOG_LEVEL=warn\nBCRYPT_COST=5\nHTTP_ADDR=:1\n",
			env:   map[string]string{"BCRYPT_COST": "6"},
			flags: []string{"--http-addr=:3"},
			want:  want{"warn", 6, ":3"}},
		{name: "an empty environment variable counts as unset",
			file: "LOG_LEVEL=warn\n",
			env:  map[string]string{"LOG_LEVEL": ""},
			want: want{"warn", 10, ":8080"}},
		{name: "an empty flag value is a value",
			file:  "ADMIN_PASSWORD=from-the-file\n",
			flags: []string{"--admin-password="},
			want:  def},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string(nil), tc.flags...)
			if tc.file != "" {
				args = append([]string{"--env-file", writeEnvFile(t, tc.file)}, args...)
			}
			c, err := cmd.LoadConfig(args, envOf(tc.env), io.Discard)
			if err != nil {
				t.Fatalf("LoadConfig(%q): %v", args, err)
			}
			got := want{c.LogLevel, c.BcryptCost, c.HTTPAddr}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if tc.name == "an empty flag value is a value" && c.AdminPassword != "" {
				t.Errorf("ADMIN_PASSWORD = %q, want the flag's empty value", c.AdminPassword)
			}
		})
	}
}

// TestLoadConfigEnvFileLocation checks that ENV_FILE names the file and --env-file beats it.
func TestLoadConfigEnvFileLocation(t *testing.T) {
	a := writeEnvFile(t, "LOG_LEVEL=warn\n")
	b := writeEnvFile(t, "LOG_LEVEL=error\n")
	c, err := cmd.LoadConfig(nil, envOf(map[string]string{"ENV_FILE": a}), io.Discard)
	if err != nil || c.LogLevel != "warn" {
		t.Fatalf("ENV_FILE: level %q, err %v; want warn", c.LogLevel, err)
	}
	c, err = cmd.LoadConfig([]string{"--env-file=" + b}, envOf(map[string]string{"ENV_FILE": a}), io.Discard)
	if err != nil || c.LogLevel != "error" {
		t.Fatalf("--env-file over ENV_FILE: level %q, err %v; want error", c.LogLevel, err)
	}
	missing := filepath.Join(t.TempDir(), "absent.env")
	_, err = cmd.LoadConfig(nil, envOf(map[string]string{"ENV_FILE": missing}), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "ENV_FILE") || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing env file: err %v; want one naming ENV_FILE and the path", err)
	}
}

// badValues lists, for every key, values that must stop start-up. "" is given by flag and
// env file only (an empty environment variable counts as unset).
var badValues = map[string][]string{
	"ADMIN_USERNAME":            {"ab", "Admin", "has space", "bad/char", strings.Repeat("a", 51)},
	"ADMIN_PASSWORD":            {"short", "1234567", strings.Repeat("p", 73)},
	"ADMIN_JWT_SECRET":          {"short", strings.Repeat("s", 31)},
	"DATA_DIR":                  {"", "   "},
	"HTTP_ADDR":                 {"nonsense", "", "localhost", ":99999", ":-1", ":http-alt", "1.2.3.4:"},
	"SSH_ADDR":                  {"nonsense", ":70000"},
	"SSH_PROXY_PORT":            {"0", "-1", "65536", "abc", "22.5", ""},
	"SSH_MAX_SESSIONS_PER_USER": {"-1", "100001", "ten", ""},
	"SSH_LOGIN_GRACE":           {"0", "500ms", "2h", "soon", ""},
	"SSH_MAX_UNAUTH_PER_IP":     {"0", "-1", "many", ""},
	"LOG_FORMAT":                {"xml", "JSON", ""},
	"LOG_LEVEL":                 {"trace", "INFO", ""},
	"RATE_LIMIT_PER_MINUTE":     {"-1", "ten", "10000001", ""},
	"BCRYPT_COST":               {"3", "16", "x", ""},
	"MANAGED_IMAGE":             {""},
	"IMAGE_PULL_POLICY":         {"sometimes", "Never", ""},
	"REGISTRY_AUTH_FILE":        {"/nonexistent-ccp-dir/config.json", "/"},
	"METRICS_ADDR":              {"nonsense", ":99999", "API"},
	"PUBLIC_HOST":               {""},
	"UNBOUND_HOST_NETWORK":      {"host", "Bridge", ""},
	"JWT_TTL":                   {"1s", "59s", "721h", "soon", "12", ""},
	"SSH_GATEWAY_CIPHERS":       {"", "rot13", "aes128-gcm@openssh.com,,", "arcfour"},
	"TOKEN_MAX_LIFETIME_DAYS":   {"-1", "3651", "forever", ""},
	"EVENT_RETENTION_DAYS":      {"-1", "36501", "a year", ""},
	"TASK_RETENTION_DAYS":       {"-1", "36501", "1.5", ""},
	"RUNTIME":                   {"podman", ""},
	"SSH_PROXY_ADDR":            {"nonsense", "127.0.0.1:99999"},
	"EGRESS_CHECK_SERVER_URL":   {"check.example:80", "ftp://x"},
	"EGRESS_CHECK_DNS_ZONE":     {"bad zone", "-x.example"},
	"EGRESS_CHECK_URL":          {"example.com/ok"},
	"EGRESS_RECHECK_INTERVAL":   {"5", "-1m", "9s", "25h", "soon", ""},
	"EGRESS_PROXY_DNS_SERVER":   {"dns.example", "2606:4700:4700::1111", "127.0.0.53", "0.0.0.0", "224.0.0.1", "255.255.255.255", "1.1.1.1:53", ""},
}

func TestLoadConfigBadValues(t *testing.T) {
	for _, k := range cmd.Keys() {
		if len(badValues[k.Name]) == 0 {
			t.Errorf("key %s has no bad-value case", k.Name)
		}
	}
	for name, values := range badValues {
		flag := "--" + strings.ToLower(strings.ReplaceAll(name, "_", "-"))
		for _, v := range values {
			type source struct {
				label string
				args  []string
				env   map[string]string
			}
			var sources []source
			if v != "" {
				sources = append(sources, source{"env", nil, map[string]string{name: v}})
			}
			sources = append(sources,
				source{"flag", []string{flag + "=" + v}, nil},
				source{"env file", []string{"--env-file", writeEnvFile(t, name+"='"+v+"'\n")}, nil},
			)
			for _, s := range sources {
				t.Run(name+"="+v+"/"+s.label, func(t *testing.T) {
					_, err := cmd.LoadConfig(s.args, envOf(s.env), io.Discard)
					if err == nil {
						t.Fatalf("%s=%q accepted", name, v)
					}
					if !strings.Contains(err.Error(), name+"=") {
						t.Errorf("error %q does not name the key %s", err, name)
					}
				})
			}
		}
	}
}

// TestLoadConfigGoodEdgeValues pins the edges of the accepted ranges.
func TestLoadConfigGoodEdgeValues(t *testing.T) {
	env := map[string]string{
		"ADMIN_USERNAME":          "a.b_c-9",
		"ADMIN_PASSWORD":          strings.Repeat("p", 72),
		"ADMIN_JWT_SECRET":        strings.Repeat("s", 32),
		"HTTP_ADDR":               "127.0.0.1:0",
		"SSH_PROXY_PORT":          "65535",
		"RATE_LIMIT_PER_MINUTE":   "0",
		"BCRYPT_COST":             "4",
		"UNBOUND_HOST_NETWORK":    "bridge",
		"JWT_TTL":                 "1m",
		"TOKEN_MAX_LIFETIME_DAYS": "3650",
		"LOG_FORMAT":              "json",
		"EGRESS_RECHECK_INTERVAL": "10s",
		"EGRESS_PROXY_DNS_SERVER": "::ffff:9.9.9.9",
	}
	c, err := cmd.LoadConfig([]string{"--ssh-addr="}, envOf(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.SSHAddr != "" || c.SSHProxyPort != 65535 || c.RateLimitPerMinute != 0 || c.BcryptCost != 4 ||
		c.JWTTTL != time.Minute || c.TokenMaxLifetimeDays != 3650 || c.AdminUsername != "a.b_c-9" ||
		len(c.AdminPassword) != 72 || c.UnboundHostNetwork != "bridge" || c.LogFormat != "json" ||
		c.EgressRecheckInterval != 10*time.Second || c.EgressProxyDNSServer != netip.MustParseAddr("9.9.9.9") {
		t.Errorf("edge values: %+v", c)
	}
}

func TestLoadConfigArguments(t *testing.T) {
	for _, args := range [][]string{{"--no-such-flag"}, {"stray"}, {"--log-level"}} {
		if _, err := cmd.LoadConfig(args, envOf(nil), io.Discard); err == nil {
			t.Errorf("LoadConfig(%q) succeeded", args)
		}
	}
}

func TestEnvFileParsing(t *testing.T) {
	const secret = "c2VjcmV0LXdpdGgtZXF1YWxzLXNpZ25zLWF0LXRoZS1lbmQ=="
	content := strings.Join([]string{
		"# a comment line",
		"   # an indented comment",
		"",
		"export ADMIN_USERNAME=root",
		"export\tPUBLIC_HOST = example.org  ",
		`ADMIN_PASSWORD="quoted # not a comment"`,
		"MANAGED_IMAGE='single/quoted:tag'",
		"ADMIN_JWT_SECRET=" + secret,
		"LOG_FORMAT=json\r",
		`DATA_DIR=""`,
		"DATA_DIR=/var/lib/ccp",
		"SOME_OTHER_TOOL=ignored",
		"exported_NAME=is-a-name-not-an-export",
		"",
	}, "\n")
	c, err := cmd.LoadConfig([]string{"--env-file", writeEnvFile(t, content)}, envOf(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct{ key, got, want string }{
		{"ADMIN_USERNAME", c.AdminUsername, "root"},
		{"PUBLIC_HOST", c.PublicHost, "example.org"},
		{"ADMIN_PASSWORD", c.AdminPassword, "quoted # not a comment"},
		{"MANAGED_IMAGE", c.ManagedImage, "single/quoted:tag"},
		{"ADMIN_JWT_SECRET", c.JWTSecret, secret},
		{"LOG_FORMAT", c.LogFormat, "json"},
		{"DATA_DIR (last line wins)", c.DataDir, "/var/lib/ccp"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %q, want %q", ch.key, ch.got, ch.want)
		}
	}

	malformed := []struct {
		name    string
		content string
		line    int
	}{
		{"no equals sign", "LOG_LEVEL=warn\n# fine\nJUST_A_WORD\n", 3},
		{"empty name", "\n=value\n", 2},
		{"space in name", "LOG LEVEL=warn\n", 1},
		{"name starts with a digit", "LOG_LEVEL=warn\n1KEY=v\n", 2},
		{"export without a name", "export\n", 1},
		{"unterminated double quote", "LOG_LEVEL=warn\nADMIN_PASSWORD=\"abcdefghij\n", 2},
		{"lone quote", "PUBLIC_HOST='\n", 1},
		{"mismatched quotes", "PUBLIC_HOST=\"x'\n", 1},
	}
	for _, tc := range malformed {
		t.Run(tc.name, func(t *testing.T) {
			p := writeEnvFile(t, tc.content)
			_, err := cmd.LoadConfig([]string{"--env-file", p}, envOf(nil), io.Discard)
			if err == nil {
				t.Fatalf("%q accepted", tc.content)
			}
			want := p + ":" + string(rune('0'+tc.line))
			if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "ENV_FILE") {
				t.Errorf("error %q does not name ENV_FILE and %s", err, want)
			}
		})
	}

	t.Run("line too long", func(t *testing.T) {
		p := writeEnvFile(t, "LOG_LEVEL=warn\nPUBLIC_HOST="+strings.Repeat("x", 70000)+"\n")
		_, err := cmd.LoadConfig([]string{"--env-file", p}, envOf(nil), io.Discard)
		if err == nil || !strings.Contains(err.Error(), p+":2") {
			t.Errorf("error %v does not name %s:2", err, p)
		}
	})
}
