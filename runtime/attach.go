package runtime

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// AttachOptions describe an interactive process started in a host's container by Attach
// (see app.AttachOptions). Width and Height are set by the engine (API >= 1.42) and, for
// older engines, by running Cmd through `/bin/sh -c 'stty rows H cols W; exec "$@"'`.
type AttachOptions = app.AttachOptions

// Attach implements app.Runtime: AttachExec as an app.Process.
func (d *Docker) Attach(ctx context.Context, hostID string, opts AttachOptions) (app.Process, error) {
	s, err := d.AttachExec(ctx, hostID, opts)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Streams implements app.Process.
func (s *ExecSession) Streams() (io.WriteCloser, io.Reader, io.Reader) {
	return s.Stdin, s.Stdout, s.Stderr
}

// ExecSession is a process started by AttachExec, streaming through the engine's exec API.
// Read Stdout and Stderr concurrently until both return io.EOF (without a TTY they are
// demultiplexed from one engine stream that reading Stdout drives, so an unread one stalls
// the other), then call Wait for the exit code, and Close in every case.
type ExecSession struct {
	// ID is the engine's exec id.
	ID string
	// Stdin feeds the process. Close it to send EOF (it half-closes the engine
	// connection, so the process reads end-of-file while output keeps flowing).
	Stdin io.WriteCloser
	// Stdout is the process's standard output; with a TTY, the terminal's output
	// (stdout and stderr together). Without a TTY, io.Copy from it (its WriteTo) is the
	// fast path: the engine's small frames are coalesced into writes of up to 32 KiB,
	// holding output back at most 250 µs while the process is quiet.
	Stdout io.Reader
	// Stderr is the process's standard error; with a TTY it is always empty.
	Stderr io.Reader

	d      *Docker
	hostID string
	tty    bool
	resp   types.HijackedResponse

	closeOnce  sync.Once
	closePipes func()
}

// maxResizeWait bounds how long Resize retries while the engine has not started the exec yet.
const maxResizeWait = 2 * time.Second

// AttachExec starts opts.Cmd in the host's running container through the engine's exec API
// and returns its streams. The process always runs as the container's configured user
// (Config.User, 1000:1000 by default), never root. Errors are *app.RuntimeError:
// container_missing, container_not_running, runtime_unavailable or runtime_error.
//
// The process is not tied to ctx once started: end it by closing Stdin (most programs
// exit on EOF), with Signal, or by letting it finish; Close only drops the streams.
func (d *Docker) AttachExec(ctx context.Context, hostID string, opts AttachOptions) (*ExecSession, error) {
	op := fmt.Sprintf("attach %q in container of host %s", strings.Join(opts.Cmd, " "), hostID)
	if len(opts.Cmd) == 0 {
		return nil, rtErr(app.CodeRuntimeError, op+": empty command", nil)
	}
	user := d.cfg.User
	if isRootUser(user) {
		return nil, rtErr(app.CodeRuntimeError, op+": refusing to attach as root (runtime Config.User is "+user+")", nil)
	}
	id, err := d.requireContainer(ctx, op, hostID)
	if err != nil {
		return nil, err
	}
	cmd := opts.Cmd
	var size *[2]uint
	if opts.TTY && opts.Width > 0 && opts.Height > 0 {
		size = &[2]uint{opts.Height, opts.Width}
		// Engines before API 1.42 ignore ConsoleSize and a resize can only follow the
		// start, racing the program's first look at its size: set it from inside first.
		cmd = append([]string{"/bin/sh", "-c", `stty rows "$1" cols "$2" 2>/dev/null; shift 2; exec "$@"`,
			"ccp-tty", strconv.FormatUint(uint64(opts.Height), 10), strconv.FormatUint(uint64(opts.Width), 10)}, cmd...)
	}
	created, err := d.cli.ContainerExecCreate(ctx, id, container.ExecOptions{
		User:         user,
		Tty:          opts.TTY,
		ConsoleSize:  size,
		AttachStdin:  true,
		AttachStdout: true,
		AttachStderr: true,
		Env:          opts.Env,
		WorkingDir:   opts.WorkingDir,
		Cmd:          cmd,
	})
	if err != nil {
		return nil, execErr(op, hostID, err)
	}
	resp, err := d.cli.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{Tty: opts.TTY, ConsoleSize: size})
	if err != nil {
		return nil, execErr(op, hostID, err)
	}
	s := &ExecSession{ID: created.ID, d: d, hostID: hostID, tty: opts.TTY, resp: resp}
	s.Stdin = &halfCloser{resp: &s.resp}
	if opts.TTY {
		// Hide bufio's WriteTo (it copies in 4 KiB steps): reads of 32 KiB go straight to
		// the connection once the buffer is drained.
		s.Stdout = struct{ io.Reader }{resp.Reader}
		s.Stderr = eofReader{}
		return s, nil
	}
	d2 := newDemux(resp.Reader)
	s.Stdout, s.Stderr = &demuxStream{d: d2}, &demuxStream{d: d2, stderr: true}
	s.closePipes = d2.close
	return s, nil
}

// demux splits the engine's multiplexed stream (no TTY) into stdout and stderr. Consuming
// Stdout drives it: a Read of Stdout runs the split in the background into two pipes;
// io.Copy from Stdout (its WriteTo) runs it in the caller's goroutine straight into the
// destination, saving a pipe hand-off per chunk on bulk output. Stderr only reads its pipe.
type demux struct {
	src        io.Reader
	once       sync.Once
	outR, errR *io.PipeReader
	outW, errW *io.PipeWriter
}

func newDemux(src io.Reader) *demux {
	d := &demux{src: src}
	d.outR, d.outW = io.Pipe()
	d.errR, d.errW = io.Pipe()
	return d
}

func (d *demux) finish(err error) {
	if errors.Is(err, io.ErrClosedPipe) {
		err = nil
	}
	// A nil error makes the readers see io.EOF.
	d.outW.CloseWithError(err)
	d.errW.CloseWithError(err)
}

func (d *demux) close() {
	d.outR.Close()
	d.errR.Close()
}

type demuxStream struct {
	d      *demux
	stderr bool
}

func (s *demuxStream) Read(p []byte) (int, error) {
	if s.stderr {
		return s.d.errR.Read(p)
	}
	s.d.once.Do(func() {
		go func() {
			_, err := stdcopy.StdCopy(s.d.outW, s.d.errW, s.d.src)
			s.d.finish(err)
		}()
	})
	return s.d.outR.Read(p)
}

// WriteTo copies the stream to w until EOF. For Stdout, unless Read started the split
// already, it runs the split here writing stdout directly to w (stderr to its pipe).
func (s *demuxStream) WriteTo(w io.Writer) (int64, error) {
	direct := false
	if !s.stderr {
		s.d.once.Do(func() { direct = true })
	}
	if !direct {
		return io.Copy(w, struct{ io.Reader }{s})
	}
	// The engine frames output in small chunks (a few KiB each, one per write of the
	// process). Coalesce them into writes of up to 32 KiB to w, never holding data longer
	// than coalesceDelay while the stream is idle.
	cw := &countingWriter{w: w}
	co := newCoalescer(cw)
	_, err := stdcopy.StdCopy(co, s.d.errW, &flushBeforeRead{r: s.d.src, co: co})
	if ferr := co.close(); err == nil && ferr != nil {
		err = ferr
	}
	if errors.Is(err, io.ErrClosedPipe) || cw.err != nil {
		err = cw.err // a failing destination ends the copy; a closed stderr reader does not matter
	}
	s.d.finish(nil)
	return cw.n, err
}

// coalesceDelay is the longest output waits in the coalescing buffer for more to arrive.
const coalesceDelay = 250 * time.Microsecond

// coalesceSize is the amount of buffered output written at once.
const coalesceSize = 32 << 10

// coalescer buffers writes to w, flushing when coalesceSize is reached or coalesceDelay
// after the writer went to wait for more input (see flushBeforeRead).
type coalescer struct {
	mu    sync.Mutex
	bw    *bufio.Writer
	timer *time.Timer
	armed bool
	err   error
}

func newCoalescer(w io.Writer) *coalescer {
	c := &coalescer{bw: bufio.NewWriterSize(w, 2*coalesceSize)}
	c.timer = time.AfterFunc(time.Hour, c.timedFlush)
	c.timer.Stop()
	return c
}

func (c *coalescer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.bw.Write(p)
	if err == nil && c.bw.Buffered() >= coalesceSize {
		err = c.bw.Flush()
	}
	if err != nil {
		c.err = err
	}
	return n, err
}

// idle is called before a read that may block: buffered output is flushed after
// coalesceDelay unless more arrives and fills the buffer first.
func (c *coalescer) idle() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bw.Buffered() > 0 && !c.armed {
		c.armed = true
		c.timer.Reset(coalesceDelay)
	}
	return c.err
}

func (c *coalescer) timedFlush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = false
	if c.err == nil && c.bw.Buffered() > 0 {
		c.err = c.bw.Flush()
	}
}

func (c *coalescer) close() error {
	c.timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = c.bw.Flush()
	}
	return c.err
}

// flushBeforeRead tells the coalescer before each read of r (which may block).
type flushBeforeRead struct {
	r  io.Reader
	co *coalescer
}

func (f *flushBeforeRead) Read(p []byte) (int, error) {
	if err := f.co.idle(); err != nil {
		return 0, err
	}
	return f.r.Read(p)
}

type countingWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil {
		c.err = err
	}
	return n, err
}

func isRootUser(user string) bool {
	name, _, _ := strings.Cut(user, ":")
	return name == "" || name == "0" || name == "root"
}

// halfCloser is ExecSession.Stdin: Close half-closes the hijacked connection so the
// process sees EOF while its output keeps streaming.
type halfCloser struct {
	resp *types.HijackedResponse
	once sync.Once
}

func (h *halfCloser) Write(p []byte) (int, error) { return h.resp.Conn.Write(p) }

func (h *halfCloser) Close() error {
	var err error
	h.once.Do(func() { err = h.resp.CloseWrite() })
	return err
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// Resize sets the terminal size (columns w, rows h) of a TTY session. The engine refuses
// a resize before the process has started, so it retries with a short backoff (bounded
// by maxResizeWait and ctx-less: it never blocks longer than that).
func (s *ExecSession) Resize(w, h uint) error {
	if !s.tty || w == 0 || h == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), maxResizeWait)
	defer cancel()
	err := retry(ctx, maxResizeWait, func() (bool, error) {
		err := s.d.cli.ContainerExecResize(ctx, s.ID, container.ResizeOptions{Height: h, Width: w})
		if err == nil {
			return true, nil
		}
		msg := strings.ToLower(err.Error())
		if isConflict(err) || strings.Contains(msg, "not running") || strings.Contains(msg, "not started") ||
			strings.Contains(msg, "no such exec") {
			return false, err // not started yet (or just finished): try again shortly
		}
		return true, err
	})
	if err != nil {
		return translate("resize exec "+s.ID, err)
	}
	return nil
}

// Wait returns the exit code of the process once the engine reports it stopped, polling
// (1 ms doubling to 100 ms) until ctx ends. Call it after Stdout reached EOF.
func (s *ExecSession) Wait(ctx context.Context) (exitCode int, err error) {
	delay := time.Millisecond
	for {
		ins, err := s.d.cli.ContainerExecInspect(ctx, s.ID)
		if err != nil {
			return -1, translate("inspect exec "+s.ID, err)
		}
		if !ins.Running {
			return ins.ExitCode, nil
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return -1, rtErr(app.CodeRuntimeError, "wait for exec "+s.ID+": "+ctx.Err().Error(), ctx.Err())
		case <-t.C:
		}
		if delay *= 2; delay > 100*time.Millisecond {
			delay = 100 * time.Millisecond
		}
	}
}

// Running reports whether the engine still runs the process.
func (s *ExecSession) Running(ctx context.Context) (bool, error) {
	ins, err := s.d.cli.ContainerExecInspect(ctx, s.ID)
	if err != nil {
		return false, translate("inspect exec "+s.ID, err)
	}
	return ins.Running, nil
}

// Signal delivers sig (a name without "SIG", e.g. "TERM", "INT", "HUP") to the process
// group of the session's process, or to the process alone when it leads no group.
//
// The engine has no API to signal an exec, so this execs `kill` inside the container as
// the same unprivileged user. Finding the process's pid inside the container reads the
// engine host's /proc/<pid>/status (NSpid), so it needs the gateway to run on the engine
// host with access to its /proc (as DialInNetns does); otherwise it returns an error
// with code runtime_error. A process that already exited is not an error.
func (s *ExecSession) Signal(ctx context.Context, sig string) error {
	sig = strings.TrimPrefix(strings.ToUpper(sig), "SIG")
	if !validSignal(sig) {
		return rtErr(app.CodeRuntimeError, "signal "+sig+": not a supported signal name", nil)
	}
	ins, err := s.d.cli.ContainerExecInspect(ctx, s.ID)
	if err != nil {
		return translate("inspect exec "+s.ID, err)
	}
	if !ins.Running || ins.Pid <= 0 {
		return nil
	}
	inner, err := nsPid(ins.Pid)
	if err != nil {
		return rtErr(app.CodeRuntimeError, "signal exec "+s.ID+": cannot map its pid into the container", err)
	}
	// Signal the process group when the process leads one (a TTY session, a shell job),
	// else the process itself.
	script := `read -r _ _ _ _ pg _ < /proc/"$1"/stat 2>/dev/null || exit 0
if [ "$pg" = "$1" ]; then kill -s "$2" -- "-$1" 2>/dev/null; else kill -s "$2" "$1" 2>/dev/null; fi
exit 0`
	cmd := []string{"sh", "-c", script, "ccp-signal", strconv.Itoa(inner), sig}
	_, stderr, code, err := s.d.Exec(ctx, s.hostID, cmd, s.d.cfg.User)
	if err != nil {
		return err
	}
	if code != 0 {
		return rtErr(app.CodeRuntimeError, fmt.Sprintf("signal %s to exec %s: kill exited %d: %s", sig, s.ID, code, strings.TrimSpace(string(stderr))), nil)
	}
	return nil
}

// nsPid returns the innermost pid (the one inside the container's pid namespace) of the
// engine-host process hostPid, from /proc/<hostPid>/status.
func nsPid(hostPid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(hostPid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.Atoi(f[len(f)-1])
		}
	}
	return 0, errors.New("no NSpid line in /proc/" + strconv.Itoa(hostPid) + "/status")
}

var signalNames = map[string]bool{
	"ABRT": true, "ALRM": true, "FPE": true, "HUP": true, "ILL": true, "INT": true, "KILL": true,
	"PIPE": true, "QUIT": true, "SEGV": true, "TERM": true, "USR1": true, "USR2": true,
	"CONT": true, "STOP": true, "TSTP": true, "WINCH": true,
}

func validSignal(sig string) bool { return signalNames[sig] }

// Close drops the streams (the hijacked engine connection). It does not stop a process
// that is still running: signal it first if it must end. Safe to call more than once.
func (s *ExecSession) Close() error {
	s.closeOnce.Do(func() {
		s.resp.Close()
		if s.closePipes != nil {
			s.closePipes()
		}
	})
	return nil
}
