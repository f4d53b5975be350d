package cmd

import (
	"io"
	"strings"
	"testing"
	"time"
)

// EGRESS_RECHECK_INTERVAL=0 disables the periodic egress checks: app takes a negative
// interval for that (its 0 means the default).
func TestEgressRecheckConfig(t *testing.T) {
	for v, want := range map[string]time.Duration{"0": -1, "0s": -1, "5m": 5 * time.Minute, "10s": 10 * time.Second, "24h": 24 * time.Hour} {
		c, err := LoadConfig([]string{"--egress-recheck-interval=" + v}, func(string) string { return "" }, io.Discard)
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		if got := c.egressRecheck(); got != want {
			t.Errorf("EGRESS_RECHECK_INTERVAL=%s: app interval %v, want %v", v, got, want)
		}
	}
	c, err := LoadConfig(nil, func(string) string { return "" }, io.Discard)
	if err != nil || c.egressRecheck() != 5*time.Minute {
		t.Fatalf("default: %v, %v", c.egressRecheck(), err)
	}
}

// A refused duration says the range in the units people write.
func TestDurationRangeMessages(t *testing.T) {
	for arg, want := range map[string]string{
		"--jwt-ttl=10s":                  "from 1m to 720h",
		"--egress-recheck-interval=5s":   "0 or a duration from 10s to 24h",
		"--egress-recheck-interval=soon": "0 or a duration from 10s to 24h",
	} {
		_, err := LoadConfig([]string{arg}, func(string) string { return "" }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want a message with %q", arg, err, want)
		}
	}
}
