package api_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"text/template/parse"
	"time"

	"github.com/creack/pty"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/api"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/testenv"
)

// nastyValues are strings no shell word may mangle.
var nastyValues = []string{
	"",
	"plain",
	`pa"ss`,
	`back\slash\`,
	`$HOME ${HOME} $(id) $((1+1))`,
	"`id`",
	`it's`,
	`'`,
	`''\''`,
	"new\nline",
	"trailing newline\n",
	"tab\tand\rcarriage",
	"!history !! ^caret~ *glob? [x] {a,b} ; & | < > #",
	"ünïcødé ☃",
	"-n",
	`all "$\' at once` + "\n" + "`x`",
}

// TestShellQuoteRoundTrip: every nasty value comes back byte for byte from each shell at
// hand.
func TestShellQuoteRoundTrip(t *testing.T) {
	shells := availableShells(t)
	for _, sh := range shells {
		for _, v := range nastyValues {
			t.Run(filepath.Base(sh)+" "+v, func(t *testing.T) {
				out, err := exec.Command(sh, "-c", "x="+api.ShellQuote(v)+"\nprintf '%s' \"$x\"").Output()
				if err != nil {
					t.Fatalf("%s: %v", sh, err)
				}
				if string(out) != v {
					t.Fatalf("%s gave %q for %q (quoted %s)", sh, out, v, api.ShellQuote(v))
				}
			})
		}
	}
	if _, err := api.RenderScript("entry.sh.tmpl", "http://x\x00y", "abcdefgh"); err == nil {
		t.Fatal("a NUL byte was rendered into a script")
	}
}

// availableShells lists the POSIX shells of this machine the scripts must work in.
func availableShells(t *testing.T) []string {
	var out []string
	for _, name := range []string{"sh", "bash", "dash", "busybox", "mksh", "zsh"} {
		if p, err := exec.LookPath(name); err == nil {
			if name == "busybox" {
				continue // needs "busybox sh": covered when it is sh
			}
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		t.Skip("no shell found")
	}
	return out
}

// TestScriptTemplatesQuoteEveryValue holds the templates to the rule: every action is
// {{sq .Field}}, alone on a line of its own as VAR={{sq .Field}} (never in a comment, never
// inside quotes of the script's own).
func TestScriptTemplatesQuoteEveryValue(t *testing.T) {
	assign := regexp.MustCompile(`(^|\n)[A-Z_][A-Z0-9_]*=$`)
	n := 0
	for _, tpl := range api.ScriptTemplates().Templates() {
		if tpl.Tree == nil {
			continue
		}
		nodes := tpl.Tree.Root.Nodes
		for i, node := range nodes {
			switch nd := node.(type) {
			case *parse.TextNode, *parse.TemplateNode:
			case *parse.ActionNode:
				n++
				cmds := nd.Pipe.Cmds
				if len(nd.Pipe.Decl) != 0 || len(cmds) != 1 || len(cmds[0].Args) != 2 || cmds[0].Args[0].String() != "sq" {
					t.Errorf("%s: action %s is not {{sq .Field}}", tpl.Name(), nd)
					continue
				}
				if _, ok := cmds[0].Args[1].(*parse.FieldNode); !ok {
					t.Errorf("%s: action %s quotes something other than a field", tpl.Name(), nd)
				}
				before, ok1 := nodeText(nodes, i-1)
				after, ok2 := nodeText(nodes, i+1)
				if !ok1 || !ok2 || !assign.MatchString(before) || !strings.HasPrefix(after, "\n") {
					t.Errorf("%s: action %s is not alone on a line as VAR={{sq .Field}}", tpl.Name(), nd)
				}
			default:
				t.Errorf("%s: unexpected template construct %s", tpl.Name(), node)
			}
		}
	}
	if n < 3 {
		t.Fatalf("found %d actions in the script templates; expected BASE twice and SHORT_ID", n)
	}
}

func nodeText(nodes []parse.Node, i int) (string, bool) {
	if i < 0 || i >= len(nodes) {
		return "", false
	}
	tn, ok := nodes[i].(*parse.TextNode)
	if !ok {
		return "", false
	}
	return string(tn.Text), true
}

// renderNasty renders each served script with hostile values in every field.
func renderNasty(t *testing.T) map[string]string {
	t.Helper()
	base := "http://h'o\"s$t\\:1/`id`$(id)\n;rm -rf x"
	out := map[string]string{}
	for _, name := range []string{"bootstrap.sh.tmpl", "entry.sh.tmpl"} {
		s, err := api.RenderScript(name, base, `ab'"$\`+"\n"+"cd")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(s, "#!/bin/sh\n") {
			t.Fatalf("%s does not start with #!/bin/sh", name)
		}
		out[name] = s
	}
	return out
}

// TestScriptsShellcheck: the rendered scripts pass shellcheck as POSIX sh (what #!/bin/sh and
// curl … | sh run) and as bash (curl … | bash), and parse in every shell at hand.
func TestScriptsShellcheck(t *testing.T) {
	dir := t.TempDir()
	for name, body := range renderNasty(t) {
		path := filepath.Join(dir, strings.TrimSuffix(name, ".tmpl"))
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, sh := range availableShells(t) {
			if out, err := exec.Command(sh, "-n", path).CombinedOutput(); err != nil {
				t.Errorf("%s -n %s: %v\n%s", sh, name, err, out)
			}
		}
		sc, err := exec.LookPath("shellcheck")
		if err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal("shellcheck is missing (Debian package shellcheck; scripts/test.sh installs it)")
			}
			t.Skip("shellcheck is missing (Debian package shellcheck): the served scripts are not linted")
		}
		for _, dialect := range []string{"sh", "bash", "dash"} {
			if out, err := exec.Command(sc, "-s", dialect, path).CombinedOutput(); err != nil {
				t.Errorf("shellcheck -s %s %s: %v\n%s\nscript:\n%s", dialect, name, err, out, body)
			}
		}
	}
}

// ptyRun runs argv on a new pseudo-terminal (its controlling terminal, so /dev/tty works),
// answering each prompt in turn, and returns the whole terminal output and the exit error.
func ptyRun(t *testing.T, env []string, argv []string, answers [][2]string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	ptmx, err := pty.Start(cmd)
	if err != nil {
		t.Fatalf("starting %v on a pty: %v", argv, err)
	}
	defer ptmx.Close()
	var out testenv.Buffer
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		b := make([]byte, 4096)
		for {
			n, err := ptmx.Read(b)
			_, _ = out.Write(b[:n])
			if err != nil {
				return
			}
		}
	}()
	seen := 0
	for _, a := range answers {
		for {
			s := out.String()
			if i := strings.Index(s[seen:], a[0]); i >= 0 {
				seen += i + len(a[0])
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("no prompt %q; terminal shows:\n%s", a[0], s)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if _, err := ptmx.Write([]byte(a[1] + "\r")); err != nil {
			t.Fatal(err)
		}
	}
	err = cmd.Wait()
	select {
	case <-copied:
	case <-time.After(2 * time.Second):
	}
	if ctx.Err() != nil {
		t.Fatalf("%v still running after 90 s; terminal shows:\n%s", argv, out.String())
	}
	return out.String(), err
}

// fakeSSH puts an ssh on PATH that writes its arguments, one per line, to a file and exits.
func fakeSSH(t *testing.T) (pathEnv, argsFile string) {
	t.Helper()
	dir := t.TempDir()
	argsFile = filepath.Join(dir, "ssh-args")
	script := "#!/bin/sh\nprintf '%s\\n' \"$@\" > " + api.ShellQuote(argsFile) + "\necho fake ssh connected\n"
	if err := os.WriteFile(filepath.Join(dir, "ssh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return "PATH=" + dir + string(os.PathListSeparator) + os.Getenv("PATH"), argsFile
}

func needScriptTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"curl", "awk", "sed", "stty"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is missing", tool)
			}
			t.Skipf("%s is missing: the served scripts cannot run", tool)
		}
	}
}

// withSSHAddress sets the SSH gateway address the handoffs name.
var withSSHAddress = withConfig(func(c *app.Config) { c.PublicHost, c.SSHProxyPort = "ssh.example.test", 2022 })

// nastyPassword is what a user may well type: every character that broke the old scripts.
const nastyPassword = `p"a$s\s'w` + "`id`" + ` $(id) ${HOME} ü !x`

// TestBootstrapScriptOnATerminal runs the served bootstrap script the way the README says
// (curl …/v1/bootstrap/script | bash, and | sh) on a terminal, against a server on the
// in-memory engine, with a password holding " $ \ ': it logs in, follows the task the moment
// it succeeds and hands over to ssh with the handoff's arguments; the password is never
// echoed. A wrong password stops it at once with the login failure.
func TestBootstrapScriptOnATerminal(t *testing.T) {
	needScriptTools(t)
	e := newEnv(t, withRuntime(&testenv.Runtime{}), withSSHAddress)
	e.do("POST", "/v1/admin/users", e.admin, map[string]any{"username": "boot-pty", "password": nastyPassword, "role": "user"}, 201, nil)
	pathEnv, argsFile := fakeSSH(t)
	cases := []struct {
		name, shell, password string
		ok                    bool
	}{
		{"bash, first login creates the host", "bash", nastyPassword, true},
		{"sh, host exists and is started", "sh", nastyPassword, true},
		{"wrong password", "bash", nastyPassword + "x", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			defer func() { e.t = t }()
			_ = os.Remove(argsFile)
			start := time.Now()
			out, err := ptyRun(t, []string{pathEnv, "CCP_URL=" + e.srv.URL},
				[]string{"sh", "-c", `curl -sSf "$CCP_URL/v1/bootstrap/script" | ` + c.shell},
				[][2]string{{"Username: ", "boot-pty"}, {"Password: ", c.password}})
			took := time.Since(start)
			if strings.Contains(out, "$(id)") || strings.Contains(out, `p"a$s`) {
				t.Errorf("the password was echoed:\n%s", out)
			}
			args, _ := os.ReadFile(argsFile)
			if !c.ok {
				var xe *exec.ExitError
				if !errors.As(err, &xe) || !strings.Contains(out, "login failed: wrong credentials") || len(args) != 0 {
					t.Fatalf("wrong password: err %v, ssh args %q, terminal:\n%s", err, args, out)
				}
				return
			}
			if err != nil {
				t.Fatalf("script failed: %v; terminal:\n%s", err, out)
			}
			var hosts struct{ Hosts []app.HostView }
			e.do("GET", "/v1/user/hosts", e.login("boot-pty", nastyPassword), nil, 200, &hosts)
			if len(hosts.Hosts) != 1 {
				t.Fatalf("hosts after bootstrap: %+v", hosts)
			}
			h := hosts.Hosts[0]
			want := "-p\n2022\n--\nboot-pty+" + h.ShortID + "@ssh.example.test\n"
			if string(args) != want {
				t.Fatalf("ssh got %q, want %q; terminal:\n%s", args, want, out)
			}
			if !strings.Contains(out, "ready") || !strings.Contains(out, "fake ssh connected") {
				t.Fatalf("terminal:\n%s", out)
			}
			// The old script misread a step's state for the task's and polled for 5 minutes.
			if took > 20*time.Second {
				t.Fatalf("the script took %s to hand over", took)
			}
			e.waitIdle(h.ID)
		})
	}
}

// TestEntryScriptOnATerminal runs the served entry script of a host (curl …/entry/ID | sh)
// with the owner's password holding " $ \ ': it shows the fresh host SSH password and hands
// over to ssh.
func TestEntryScriptOnATerminal(t *testing.T) {
	needScriptTools(t)
	e := newEnv(t, withRuntime(&testenv.Runtime{}), withSSHAddress)
	var u struct{ ID string }
	e.do("POST", "/v1/admin/users", e.admin, map[string]any{"username": "entry-pty", "password": nastyPassword, "role": "user"}, 201, &u)
	hostID := e.host(u.ID)
	e.waitIdle(hostID)
	var h app.HostView
	e.do("GET", "/v1/admin/hosts/"+hostID, e.admin, nil, 200, &h)
	pathEnv, argsFile := fakeSSH(t)
	out, err := ptyRun(t, []string{pathEnv, "CCP_URL=" + e.srv.URL},
		[]string{"sh", "-c", `curl -sSf "$CCP_URL/entry/` + h.ShortID + `" | sh`},
		[][2]string{{"Password: ", nastyPassword}})
	if err != nil {
		t.Fatalf("entry script failed: %v; terminal:\n%s", err, out)
	}
	args, _ := os.ReadFile(argsFile)
	want := "-p\n2022\n--\nentry-pty+" + h.ShortID + "@ssh.example.test\n"
	if string(args) != want {
		t.Fatalf("ssh got %q, want %q; terminal:\n%s", args, want, out)
	}
	if !regexp.MustCompile(`SSH password \(valid until the next entry login\): [A-Za-z0-9]{20}\r?\n`).MatchString(out) {
		t.Fatalf("no SSH password shown:\n%s", out)
	}
}
