package runtime

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// watcher accumulates everything read from a stream so tests can wait for text in it.
type watcher struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	err  error
	more chan struct{}
}

func watch(r io.Reader) *watcher {
	w := &watcher{more: make(chan struct{}, 1)}
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := r.Read(b)
			w.mu.Lock()
			w.buf.Write(b[:n])
			w.err = err
			w.mu.Unlock()
			select {
			case w.more <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	return w
}

// waitFor waits until the stream's output so far contains want.
func (w *watcher) waitFor(t *testing.T, want string, limit time.Duration) string {
	t.Helper()
	deadline := time.After(limit)
	for {
		w.mu.Lock()
		got, err := w.buf.String(), w.err
		w.mu.Unlock()
		if strings.Contains(got, want) {
			return got
		}
		if err != nil {
			t.Fatalf("stream ended (%v) before %q; got %q", err, want, got)
		}
		select {
		case <-w.more:
		case <-deadline:
			t.Fatalf("no %q within %s; got %q", want, limit, got)
		}
	}
}

func TestAttachStreamsStdinAndExitCode(t *testing.T) {
	t.Parallel()
	d := requireDocker(t)
	ctx := testCtx(t)
	spec := newSpec(t, d)
	mustStartReady(t, ctx, d, spec)

	s, err := d.AttachExec(ctx, spec.HostID, AttachOptions{
		Cmd: []string{"bash", "-c", `cat; echo "uid=$(id -u) pwd=$PWD x=$X" >&2; exit 3`},
		Env: []string{"X=y"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var stdout, stderr bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); io.Copy(&stdout, s.Stdout) }()
	go func() { defer wg.Done(); io.Copy(&stderr, s.Stderr) }()
	if _, err := io.WriteString(s.Stdin, "hello through stdin\n"); err != nil {
		t.Fatal(err)
	}
	if err := s.Stdin.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	code, err := s.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if code != 3 {
		t.Fatalf("exit code %d, want 3", code)
	}
	if stdout.String() != "hello through stdin\n" {
		t.Fatalf("stdout %q", stdout.String())
	}
	if got := strings.TrimSpace(stderr.String()); got != "uid=1000 pwd=/home/workspace x=y" {
		t.Fatalf("stderr %q", got)
	}
}

func TestAttachTTYResizeAndSignal(t *testing.T) {
	t.Parallel()
	d := requireDocker(t)
	ctx := testCtx(t)
	spec := newSpec(t, d)
	mustStartReady(t, ctx, d, spec)

	s, err := d.AttachExec(ctx, spec.HostID, AttachOptions{
		Cmd: []string{"bash", "-c", `stty size; read -r _; stty size; sleep 60`},
		TTY: true, Width: 100, Height: 30, Env: []string{"TERM=xterm"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out := watch(s.Stdout)
	out.waitFor(t, "30 100", 10*time.Second)
	if err := s.Resize(120, 40); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(s.Stdin, "\n"); err != nil {
		t.Fatal(err)
	}
	out.waitFor(t, "40 120", 10*time.Second)

	// The engine cannot signal an exec; Signal execs kill on the session's process group.
	if err := s.Signal(ctx, "TERM"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	code, err := s.Wait(wctx)
	if err != nil {
		t.Fatal(err)
	}
	if code != 128+15 {
		t.Fatalf("exit code after SIGTERM %d, want 143", code)
	}
	if err := s.Signal(ctx, "BOGUS"); err == nil {
		t.Fatal("a bogus signal name was accepted")
	}
}

func TestAttachRefusals(t *testing.T) {
	t.Parallel()
	d := requireDocker(t)
	ctx := testCtx(t)
	spec := newSpec(t, d)
	if _, err := d.AttachExec(ctx, spec.HostID, AttachOptions{Cmd: []string{"true"}}); codeOf(err) != CodeContainerMissing {
		t.Fatalf("attach without container: %v", err)
	}
	if _, err := d.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if _, err := d.AttachExec(ctx, spec.HostID, AttachOptions{Cmd: []string{"true"}}); codeOf(err) != CodeContainerNotRunning {
		t.Fatalf("attach to a stopped container: %v", err)
	}
	if _, err := d.AttachExec(ctx, spec.HostID, AttachOptions{}); err == nil {
		t.Fatal("empty command accepted")
	}
	root := &Docker{cli: d.cli, cfg: Config{User: "0:0"}.withDefaults()}
	if _, err := root.AttachExec(ctx, spec.HostID, AttachOptions{Cmd: []string{"true"}}); err == nil || !strings.Contains(err.Error(), "root") {
		t.Fatalf("attach as root: %v", err)
	}
}

// Output copied with io.Copy (the coalescing path) is not held back while the process is
// quiet, and stays in order.
func TestAttachCoalescedOutputFlowsPromptly(t *testing.T) {
	t.Parallel()
	d := requireDocker(t)
	ctx := testCtx(t)
	spec := newSpec(t, d)
	mustStartReady(t, ctx, d, spec)

	s, err := d.AttachExec(ctx, spec.HostID, AttachOptions{
		Cmd: []string{"bash", "-c", `echo first; read -r _; head -c 3000000 /dev/zero | tr '\0' x; echo; echo last`},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pr, pw := io.Pipe()
	copied := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(pw, s.Stdout) // WriteTo: coalesced, in the caller's goroutine
		pw.Close()
		copied <- n
	}()
	go io.Copy(io.Discard, s.Stderr)
	out := watch(pr)
	// "first" must arrive while the process waits for input (nothing else is coming).
	out.waitFor(t, "first\n", 10*time.Second)
	if _, err := io.WriteString(s.Stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	out.waitFor(t, "last\n", 20*time.Second)
	if n := <-copied; n != int64(len("first\n")+3000000+len("\nlast\n")) {
		t.Fatalf("copied %d bytes", n)
	}
	got := out.waitForDone(t)
	want := "first\n" + strings.Repeat("x", 3000000) + "\nlast\n"
	if got != want {
		t.Fatalf("output differs: %d bytes, want %d", len(got), len(want))
	}
	if code, err := s.Wait(ctx); err != nil || code != 0 {
		t.Fatalf("exit %d %v", code, err)
	}
}

// waitForDone returns everything once the stream ended.
func (w *watcher) waitForDone(t *testing.T) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		w.mu.Lock()
		got, err := w.buf.String(), w.err
		w.mu.Unlock()
		if err != nil {
			return got
		}
		select {
		case <-w.more:
		case <-deadline:
			t.Fatal("stream did not end")
		}
	}
}
