package cmd_test

import (
	"os"
	"strings"
	"testing"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/cmd"
)

// TestReadmeErrorTable: the README's "Error codes" table is the one `cloud-cli-proxy errors`
// prints (app.ErrorCodes); after adding a code, paste `go run . errors` into the README.
func TestReadmeErrorTable(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), "\n### Error codes\n")
	if !ok {
		t.Fatal(`README has no "### Error codes" section`)
	}
	var table []string
	for _, line := range strings.Split(after, "\n") {
		if strings.HasPrefix(line, "|") {
			table = append(table, line)
		} else if len(table) > 0 {
			break
		}
	}
	got, want := strings.Join(table, "\n")+"\n", cmd.ErrorTable()
	if got != want {
		gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
		for i := 0; i < len(gl) || i < len(wl); i++ {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Errorf("README's error table differs from `go run . errors` at line %d:\n README: %s\n  want: %s", i+1, g, w)
				break
			}
		}
	}
}
