package app_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// A -L forward reaches only the workspace's own loopback.
func TestLoopbackAddrs(t *testing.T) {
	for host, want := range map[string]string{
		"127.0.0.1": "127.0.0.1", "::1": "::1", "localhost": "127.0.0.1,::1", "LocalHost": "127.0.0.1,::1",
	} {
		got, err := app.LoopbackAddrs(host)
		if err != nil || strings.Join(got, ",") != want {
			t.Errorf("LoopbackAddrs(%q) = %v, %v; want %s", host, got, err, want)
		}
	}
	for _, host := range []string{"10.0.0.1", "127.0.0.2", "0.0.0.0", "example.com", "", "169.254.169.254", "::"} {
		if _, err := app.LoopbackAddrs(host); !errors.Is(err, app.ErrNotLoopback) {
			t.Errorf("LoopbackAddrs(%q) = %v; want ErrNotLoopback", host, err)
		}
	}
}
