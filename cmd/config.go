package cmd

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// Config is the server's configuration after flags, environment and env file are merged.
type Config struct {
	AdminUsername     string
	AdminPassword     string
	JWTSecret         string
	DataDir           string
	HTTPAddr          string
	SSHAddr           string
	SSHProxyPort      int
	SSHProxyAddr      string
	SSHGatewayCiphers string // validated, comma-separated; see gatewayCiphers
	// SSHMaxSessionsPerUser is SSH_MAX_SESSIONS_PER_USER; 0 means no limit.
	SSHMaxSessionsPerUser int
	SSHLoginGrace         time.Duration
	SSHMaxUnauthPerIP     int
	LogFormat             string
	LogLevel              string
	RateLimitPerMinute    int
	BcryptCost            int
	ManagedImage          string
	ImagePullPolicy       string // IMAGE_PULL_POLICY: missing, always or never
	RegistryAuthFile      string // REGISTRY_AUTH_FILE: a Docker config.json with registry credentials
	MetricsAddr           string // METRICS_ADDR: "" off, "api" (or HTTP_ADDR) on the API port, else its own listener
	PublicHost            string
	UnboundHostNetwork    string
	JWTTTL                time.Duration
	TokenMaxLifetimeDays  int
	EventRetentionDays    int
	TaskRetentionDays     int
	Runtime               string
	EgressCheckServerURL  string
	EgressCheckDNSZone    string
	EgressCheckURL        string
	// EgressRecheckInterval is EGRESS_RECHECK_INTERVAL; 0 disables (see egressRecheck).
	EgressRecheckInterval time.Duration
	// EgressProxyDNSServer is EGRESS_PROXY_DNS_SERVER (tunnel.Config.ProxyDNSServer).
	EgressProxyDNSServer netip.Addr
}

// egressRecheck is app.Config.EgressRecheckInterval for EGRESS_RECHECK_INTERVAL, whose 0
// disables the periodic checks (app's 0 would mean its default).
func (c Config) egressRecheck() time.Duration {
	if c.EgressRecheckInterval == 0 {
		return -1
	}
	return c.EgressRecheckInterval
}

// Key describes one configuration key; the README's table is generated from the same list.
type Key struct {
	Name    string
	Default string
	Help    string
	set     func(c *Config, v string) error
}

// nonEmpty sets a string key whose empty value would silently mean something else (an empty
// DATA_DIR fails later with a message that does not name the key).
func nonEmpty(dst func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error {
		if strings.TrimSpace(v) == "" {
			return fmt.Errorf("must not be empty")
		}
		*dst(c) = v
		return nil
	}
}

func intIn(lo, hi int, dst func(*Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("must be a whole number from %d to %d", lo, hi)
		}
		*dst(c) = n
		return nil
	}
}

// durationIn parses a Go duration from lo to hi; with zeroOK, 0 is accepted too.
func durationIn(lo, hi time.Duration, zeroOK bool, dst func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || !(zeroOK && d == 0) && (d < lo || d > hi) {
			if zeroOK {
				return fmt.Errorf("must be 0 or a duration from %s to %s (e.g. 5m)", fmtDur(lo), fmtDur(hi))
			}
			return fmt.Errorf("must be a duration from %s to %s", fmtDur(lo), fmtDur(hi))
		}
		*dst(c) = d
		return nil
	}
}

// fmtDur writes a duration the way people do: 1m, 10s, 720h.
func fmtDur(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func oneOf(options []string, dst func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error {
		for _, o := range options {
			if v == o {
				*dst(c) = v
				return nil
			}
		}
		return fmt.Errorf("must be one of %s", strings.Join(options, ", "))
	}
}

func addr(allowEmpty bool, dst func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error {
		if v == "" && allowEmpty {
			*dst(c) = v
			return nil
		}
		_, port, err := net.SplitHostPort(v)
		if err != nil {
			return fmt.Errorf("must be host:port (e.g. :8080)")
		}
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return fmt.Errorf("port must be 0-65535")
		}
		*dst(c) = v
		return nil
	}
}

var dnsNameRE = regexp.MustCompile(`^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)*[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.?$`)

// Keys lists every configuration key.
func Keys() []Key {
	return []Key{
		{"ADMIN_USERNAME", "admin", "Username of the administrator created on first start.", func(c *Config, v string) error {
			if err := app.ValidateUsername(v); err != nil { // the service's own rule
				return errors.New(app.AsError(err).Message)
			}
			c.AdminUsername = v
			return nil
		}},
		{"ADMIN_PASSWORD", "", "Password of that administrator on first start; generated and printed once when empty.", func(c *Config, v string) error {
			if v != "" {
				if err := app.ValidatePassword("password", v); err != nil { // the service's own rule
					return errors.New(app.AsError(err).Message)
				}
			}
			c.AdminPassword = v
			return nil
		}},
		{"ADMIN_JWT_SECRET", "", "HS256 secret for login JWTs (32+ bytes); generated into DATA_DIR/jwt_secret (0600) when empty. Changing it ends every login session; access tokens are not affected.", func(c *Config, v string) error {
			if v != "" && len(v) < 32 {
				return fmt.Errorf("must be at least 32 characters")
			}
			c.JWTSecret = v
			return nil
		}},
		{"DATA_DIR", "./data", "Directory of the database and generated secrets; created 0700.", nonEmpty(func(c *Config) *string { return &c.DataDir })},
		{"HTTP_ADDR", ":8080", "Listen address of the REST API.", addr(false, func(c *Config) *string { return &c.HTTPAddr })},
		{"METRICS_ADDR", "", "Where Prometheus metrics are served at /metrics: empty is off; api (or the same address as HTTP_ADDR) serves them on the API port to administrators only (bearer JWT or access token); any other host:port is a listener of its own without authentication (bind it to a private address).", func(c *Config, v string) error {
			if v == "" || v == "api" {
				c.MetricsAddr = v
				return nil
			}
			return addr(false, func(c *Config) *string { return &c.MetricsAddr })(c, v)
		}},
		{"SSH_ADDR", ":22", "Listen address of the SSH TUI door; empty disables it.", addr(true, func(c *Config) *string { return &c.SSHAddr })},
		{"SSH_PROXY_PORT", "2222", "Port of the SSH gateway into containers (also shown in access commands).", intIn(1, 65535, func(c *Config) *int { return &c.SSHProxyPort })},
		{"SSH_PROXY_ADDR", "", "Listen address of the SSH gateway; empty listens on all addresses at SSH_PROXY_PORT, off disables it.", func(c *Config, v string) error {
			if v == "" || v == "off" {
				c.SSHProxyAddr = v
				return nil
			}
			return addr(false, func(c *Config) *string { return &c.SSHProxyAddr })(c, v)
		}},
		{"SSH_MAX_SESSIONS_PER_USER", "10", "Most workspace sessions (shells, commands, sftp; over the gateway and the TUI door's shells) one user may have open at once; 0 means no limit. Port forwards, TUI screens and desktops do not count.", intIn(0, 100000, func(c *Config) *int { return &c.SSHMaxSessionsPerUser })},
		{"SSH_LOGIN_GRACE", "30s", "Both SSH doors close a connection that has not authenticated this long after connecting (like OpenSSH's LoginGraceTime).", durationIn(time.Second, time.Hour, false, func(c *Config) *time.Duration { return &c.SSHLoginGrace })},
		{"SSH_MAX_UNAUTH_PER_IP", "20", "Most connections one client address may hold open on each SSH door before they authenticate; more are refused.", intIn(1, 100000, func(c *Config) *int { return &c.SSHMaxUnauthPerIP })},
		{"SSH_GATEWAY_CIPHERS", "aes128-gcm@openssh.com,aes256-gcm@openssh.com", "Ciphers the SSH gateway offers, comma-separated, in preference order. AES-GCM only by default: clients use their own first choice among the offer, and OpenSSH would otherwise pick chacha20-poly1305, which costs the gateway about 3x the CPU per byte. Add aes128-ctr for clients without GCM.", func(c *Config, v string) error {
			supported := map[string]bool{}
			for _, name := range gossh.SupportedAlgorithms().Ciphers {
				supported[name] = true
			}
			for _, name := range strings.Split(v, ",") {
				if name = strings.TrimSpace(name); !supported[name] {
					return fmt.Errorf("%q is not a cipher the gateway supports (%s)", name, strings.Join(gossh.SupportedAlgorithms().Ciphers, ", "))
				}
			}
			c.SSHGatewayCiphers = v
			return nil
		}},
		{"LOG_FORMAT", "text", "Log format: json or text.", oneOf([]string{"json", "text"}, func(c *Config) *string { return &c.LogFormat })},
		{"LOG_LEVEL", "info", "Log level: debug, info, warn or error.", oneOf([]string{"debug", "info", "warn", "error"}, func(c *Config) *string { return &c.LogLevel })},
		{"RATE_LIMIT_PER_MINUTE", "120", "Requests per minute per client IP on the API (token bucket); 0 disables.", intIn(0, 10000000, func(c *Config) *int { return &c.RateLimitPerMinute })},
		{"BCRYPT_COST", "10", "bcrypt cost of stored passwords.", intIn(4, 15, func(c *Config) *int { return &c.BcryptCost })},
		{"MANAGED_IMAGE", "cloud-cli-proxy/managed:latest", "Docker image of new hosts.", nonEmpty(func(c *Config) *string { return &c.ManagedImage })},
		{"IMAGE_PULL_POLICY", "missing", "When MANAGED_IMAGE is pulled before a container is created: missing (only when the engine does not have it), always, or never (build or load it yourself). Pull progress shows as task steps; a failed pull fails the task with the registry's message.", oneOf([]string{"missing", "always", "never"}, func(c *Config) *string { return &c.ImagePullPolicy })},
		{"REGISTRY_AUTH_FILE", "", "Docker config.json whose auths (or credential helpers) give the registry credentials of pulls; empty uses $DOCKER_CONFIG/config.json or ~/.docker/config.json when present.", func(c *Config, v string) error {
			if v != "" {
				if fi, err := os.Stat(v); err != nil || !fi.Mode().IsRegular() {
					return fmt.Errorf("must be a readable Docker config.json file")
				}
			}
			c.RegistryAuthFile = v
			return nil
		}},
		{"PUBLIC_HOST", "localhost", "Host name users connect to, used in access commands and handoffs.", nonEmpty(func(c *Config) *string { return &c.PublicHost })},
		{"UNBOUND_HOST_NETWORK", "none", "Network of hosts without an egress binding: none (loopback only) or bridge.", oneOf([]string{"none", "bridge"}, func(c *Config) *string { return &c.UnboundHostNetwork })},
		{"JWT_TTL", "12h", "Lifetime of a login JWT.", durationIn(time.Minute, 30*24*time.Hour, false, func(c *Config) *time.Duration { return &c.JWTTTL })},
		{"TOKEN_MAX_LIFETIME_DAYS", "0", "Longest access-token lifetime in days; 0 allows tokens that never expire.", intIn(0, 3650, func(c *Config) *int { return &c.TokenMaxLifetimeDays })},
		{"EVENT_RETENTION_DAYS", "365", "Days audit events are kept; older ones are deleted every 30 s (a retention.purge event says how many); 0 keeps them forever.", intIn(0, 36500, func(c *Config) *int { return &c.EventRetentionDays })},
		{"TASK_RETENTION_DAYS", "90", "Days finished tasks are kept; queued and running tasks are never deleted; 0 keeps them forever.", intIn(0, 36500, func(c *Config) *int { return &c.TaskRetentionDays })},
		{"EGRESS_CHECK_SERVER_URL", "", "Base URL of your own egress check service (`cloud-cli-proxy check-service`): egress tests ask it for the exit IP and, with EGRESS_CHECK_DNS_ZONE, its DNS log. Unset, egress tests ask the IP-echo EGRESS_CHECK_URL and skip the DNS-leak check, and the in-container host checks are off.", func(c *Config, v string) error {
			if v != "" && !strings.HasPrefix(v, "http://") && !strings.HasPrefix(v, "https://") {
				return fmt.Errorf("must be an http:// or https:// URL")
			}
			c.EgressCheckServerURL = v
			return nil
		}},
		{"EGRESS_CHECK_DNS_ZONE", "", "DNS zone the check service is authoritative for; the DNS-leak check answers `skipped: no check zone configured` until it is set.", func(c *Config, v string) error {
			if v != "" && !dnsNameRE.MatchString(v) {
				return fmt.Errorf("must be a DNS name such as check.example.com")
			}
			c.EgressCheckDNSZone = v
			return nil
		}},
		{"EGRESS_CHECK_URL", "", "URL fetched through a tunnel by the connectivity check; defaults to EGRESS_CHECK_SERVER_URL, else the public IP-echo service https://api.ipify.org. Without EGRESS_CHECK_SERVER_URL it is also the exit-IP check's IP echo (it must answer the caller's IP as text).", func(c *Config, v string) error {
			if v != "" && !strings.HasPrefix(v, "http://") && !strings.HasPrefix(v, "https://") {
				return fmt.Errorf("must be an http:// or https:// URL")
			}
			c.EgressCheckURL = v
			return nil
		}},
		{"EGRESS_RECHECK_INTERVAL", "5m", "How often the egress of every running host with a bound egress is checked again from inside its container (a Go duration from 10s to 24h), each host at its own moment of the interval: a failing check marks the host unavailable, a later pass clears it, an unchanged result records no event. 0 disables these checks of healthy hosts (an unavailable host is still retried every 5m, or sooner with a shorter interval).", durationIn(10*time.Second, 24*time.Hour, true, func(c *Config) *time.Duration { return &c.EgressRecheckInterval })},
		{"EGRESS_PROXY_DNS_SERVER", "1.1.1.1", "Resolver of containers behind a proxy egress (an IPv4 address): their resolv.conf names it, and their DNS queries to it are carried through the proxy to it.", func(c *Config, v string) error {
			a, err := netip.ParseAddr(v)
			if err == nil {
				a = a.Unmap()
			}
			if err != nil || !a.Is4() || a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
				return fmt.Errorf("must be an IPv4 unicast address such as 1.1.1.1 (not loopback: the container's own)")
			}
			c.EgressProxyDNSServer = a
			return nil
		}},
		{"RUNTIME", "docker", "Container engine: docker (the engine found through DOCKER_HOST or its socket).", oneOf([]string{"docker"}, func(c *Config) *string { return &c.Runtime })},
	}
}

// flagName turns HTTP_ADDR into http-addr.
func flagName(key string) string { return strings.ToLower(strings.ReplaceAll(key, "_", "-")) }

// LoadConfig merges, from lowest to highest precedence: defaults, the env file (--env-file
// or ENV_FILE), the environment, and flags. A bad value names its key.
func LoadConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	keys := Keys()
	values := map[string]string{}
	for _, k := range keys {
		values[k.Name] = k.Default
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	envFile := fs.String("env-file", getenv("ENV_FILE"), "file of KEY=VALUE lines (ENV_FILE)")
	flagVals := map[string]*string{}
	for _, k := range keys {
		flagVals[k.Name] = fs.String(flagName(k.Name), "", k.Help+" ("+k.Name+")")
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *envFile != "" {
		fileVals, err := readEnvFile(*envFile)
		if err != nil {
			return Config{}, err
		}
		for name, v := range fileVals {
			if _, ok := values[name]; ok {
				values[name] = v
			}
		}
	}
	for _, k := range keys {
		if v, ok := lookup(getenv, k.Name); ok {
			values[k.Name] = v
		}
	}
	fs.Visit(func(f *flag.Flag) {
		for _, k := range keys {
			if flagName(k.Name) == f.Name {
				values[k.Name] = *flagVals[k.Name]
			}
		}
	})
	var c Config
	for _, k := range keys {
		if err := k.set(&c, values[k.Name]); err != nil {
			return Config{}, fmt.Errorf("config %s=%q: %w", k.Name, values[k.Name], err)
		}
	}
	return c, nil
}

func lookup(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	return v, v != ""
}

func readEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config ENV_FILE: %w", err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		if rest, ok := strings.CutPrefix(t, "export"); ok && rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
			t = strings.TrimSpace(rest)
		}
		name, v, ok := strings.Cut(t, "=")
		name = strings.TrimSpace(name)
		if !ok || !validEnvName(name) {
			return nil, fmt.Errorf("config ENV_FILE %s:%d: expected KEY=VALUE", path, line)
		}
		v = strings.TrimSpace(v)
		if v != "" && (v[0] == '"' || v[0] == '\'') {
			if len(v) < 2 || v[len(v)-1] != v[0] {
				return nil, fmt.Errorf("config ENV_FILE %s:%d: unterminated quote in the value of %s", path, line, name)
			}
			v = v[1 : len(v)-1]
		}
		out[name] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("config ENV_FILE %s:%d: %w", path, line+1, err)
	}
	return out, nil
}

// validEnvName accepts shell variable names: a letter or '_' then letters, digits or '_'.
func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// gatewayCiphers is SSH_GATEWAY_CIPHERS as a list.
func (c Config) gatewayCiphers() []string {
	var out []string
	for _, name := range strings.Split(c.SSHGatewayCiphers, ",") {
		if name = strings.TrimSpace(name); name != "" {
			out = append(out, name)
		}
	}
	return out
}
