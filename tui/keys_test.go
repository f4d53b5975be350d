package tui

import (
	"io"
	"strings"
	"testing"

	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"
	"golang.org/x/crypto/ssh"
)

// A generated private key shown by the TUI copies from the terminal into a working key
// file: the lines from BEGIN to END, exactly as drawn (colours on, as the door sets them),
// are the key, with no indentation or styling inside the block.
func TestGeneratedPrivateKeyPastesAsAKeyFile(t *testing.T) {
	e := newEnv(t)
	_, alice := e.seed()
	colour := lipgloss.NewRenderer(io.Discard)
	colour.SetColorProfile(termenv.ANSI256)
	for _, w := range []int{80, 120, 50} { // 50: narrower than a key line, which wraps
		d := e.open(alice, w, 40, func(o *Options) { o.Renderer = colour })
		d.press(":keys", "enter", "g", "y")
		var block []string
		for _, l := range strings.Split(d.m.View(), "\n") {
			if strings.Contains(l, "BEGIN OPENSSH PRIVATE KEY") || len(block) > 0 {
				block = append(block, l)
			}
			if strings.Contains(l, "END OPENSSH PRIVATE KEY") {
				break
			}
		}
		if len(block) < 3 || !strings.HasPrefix(block[0], "-----BEGIN") || !strings.HasPrefix(block[len(block)-1], "-----END") {
			t.Fatalf("width %d: key block not drawn from the first column:\n%s", w, strings.Join(block, "\n"))
		}
		for _, l := range block {
			if strings.Contains(l, "\x1b") || strings.TrimSpace(l) != l {
				t.Fatalf("width %d: key line %q holds styling or blanks around it", w, l)
			}
		}
		if _, err := ssh.ParsePrivateKey([]byte(strings.Join(block, "\n") + "\n")); err != nil {
			t.Fatalf("width %d: the key as shown does not parse: %v", w, err)
		}
		d.contains("Save it as ~/.ssh/ccp_ed25519")
		d.press("enter")
	}
}
