package api

import (
	"net/http"
	"testing"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// TestErrorCodeStatuses: the HTTP status app.ErrorCodes gives a code (the README's table) is
// the one writeError answers for its kind; only method_not_allowed and vnc_unreachable are
// written with their own status.
func TestErrorCodeStatuses(t *testing.T) {
	own := map[app.ErrorCode]int{app.CodeMethodNotAllowed: http.StatusMethodNotAllowed, app.CodeVNCUnreachable: http.StatusBadGateway}
	for _, c := range app.ErrorCodes() {
		if c.Status == 0 {
			continue
		}
		want := statusOf(c.Kind)
		if s, ok := own[c.Code]; ok {
			want = s
		}
		if c.Status != want {
			t.Errorf("%s: ErrorCodes says %d, the API answers %d", c.Code, c.Status, want)
		}
	}
}
