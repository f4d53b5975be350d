package cmd_test

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// freeAddr is a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func get(t *testing.T, url, bearer string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	res, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestServeMetricsAddr(t *testing.T) {
	t.Parallel()
	base := func() map[string]string {
		return map[string]string{"DATA_DIR": t.TempDir(), "SSH_ADDR": "", "SSH_PROXY_ADDR": "off", "HTTP_ADDR": "127.0.0.1:0",
			"BCRYPT_COST": "4", "ADMIN_PASSWORD": "metrics-password", "IMAGE_PULL_POLICY": "never",
			"MANAGED_IMAGE": "cloud-cli-proxy/no-such-image:never"}
	}
	// Its own listener: no authentication, the API port has no /metrics.
	env := base()
	maddr := freeAddr(t)
	env["METRICS_ADDR"] = maddr
	s := startServe(t, env)
	if _, code := s.login("admin", "wrong-password"); code != 401 {
		t.Fatalf("bad login: %d", code)
	}
	code, body := get(t, "http://"+maddr+"/metrics", "")
	if code != 200 || !strings.Contains(body, `cloudcliproxy_login_failures_total{door="api",method="password"} 1`) ||
		!strings.Contains(body, `cloudcliproxy_http_requests_total{method="POST",route="/v1/auth/login",status="401"} 1`) ||
		!strings.Contains(body, "cloudcliproxy_db_size_bytes") {
		t.Errorf("metrics listener: %d\n%.2000s", code, body)
	}
	if code, _ := get(t, s.url+"/metrics", ""); code != 404 {
		t.Errorf("/metrics on the API port without METRICS_ADDR=api: %d", code)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	// The warning of an absent image under IMAGE_PULL_POLICY=never names the fix (when the
	// engine answers at all).
	if log := s.stderr.String(); !strings.Contains(log, "container engine not reachable") &&
		(!strings.Contains(log, "MANAGED_IMAGE is not on the container engine") || !strings.Contains(log, "IMAGE_PULL_POLICY=missing")) {
		t.Errorf("no warning naming the fix:\n%s", log)
	}

	// On the API port: admins only.
	env = base()
	env["METRICS_ADDR"] = "api"
	s = startServe(t, env)
	jwt, code := s.login("admin", "metrics-password")
	if code != 200 {
		t.Fatalf("login: %d", code)
	}
	if code, _ := get(t, s.url+"/metrics", ""); code != 401 {
		t.Errorf("/metrics without a credential: %d", code)
	}
	if code, body := get(t, s.url+"/metrics", jwt); code != 200 || !strings.Contains(body, "cloudcliproxy_http_requests_total") {
		t.Errorf("/metrics as admin: %d\n%.500s", code, body)
	}
}
