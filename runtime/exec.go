package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// Exec runs cmd in the host's running container as user (empty: the container's user,
// Config.User) without a TTY and without stdin, and returns its stdout and stderr
// (separately, demultiplexed) and its exit code.
//
// err is non-nil only when the command could not be run at all: container_missing,
// container_not_running, runtime_unavailable, runtime_error (including ctx ending). A
// command that runs and fails is err == nil with a non-zero exitCode; a command that does
// not exist in the image typically gives exit code 126 or 127 with the engine's message
// on stdout/stderr. Output is collected in memory: use it for short commands.
func (d *Docker) Exec(ctx context.Context, hostID string, cmd []string, user string) (stdout, stderr []byte, exitCode int, err error) {
	op := fmt.Sprintf("exec %q in container of host %s", strings.Join(cmd, " "), hostID)
	if len(cmd) == 0 {
		return nil, nil, -1, rtErr(app.CodeRuntimeError, op+": empty command", nil)
	}
	id, err := d.requireContainer(ctx, op, hostID)
	if err != nil {
		return nil, nil, -1, err
	}
	created, err := d.cli.ContainerExecCreate(ctx, id, container.ExecOptions{
		User:         user,
		Cmd:          cmd,
		AttachStdout: true,
		AttachStderr: true,
	})
	if err != nil {
		return nil, nil, -1, execErr(op, hostID, err)
	}
	resp, err := d.cli.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{})
	if err != nil {
		return nil, nil, -1, execErr(op, hostID, err)
	}
	// The hijacked connection ignores ctx once established: close it when ctx ends.
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			resp.Close()
		case <-done:
		}
	}()
	var outBuf, errBuf bytes.Buffer
	_, copyErr := stdcopy.StdCopy(&outBuf, &errBuf, resp.Reader)
	close(done)
	resp.Close()
	if ctx.Err() != nil {
		return outBuf.Bytes(), errBuf.Bytes(), -1, rtErr(app.CodeRuntimeError, op+": "+ctx.Err().Error(), ctx.Err())
	}
	if copyErr != nil {
		return outBuf.Bytes(), errBuf.Bytes(), -1, translate(op+": reading output", copyErr)
	}

	// The stream ends when the process exits; the engine may record the exit code a
	// moment later, so poll (bounded, with backoff) until it is no longer running.
	code := -1
	err = retry(ctx, 10*time.Second, func() (bool, error) {
		ins, err := d.cli.ContainerExecInspect(ctx, created.ID)
		if err != nil {
			return true, err
		}
		if ins.Running {
			return false, errors.New("exec still running after its output ended")
		}
		code = ins.ExitCode
		return true, nil
	})
	if err != nil {
		return outBuf.Bytes(), errBuf.Bytes(), -1, execErr(op, hostID, err)
	}
	return outBuf.Bytes(), errBuf.Bytes(), code, nil
}

func execErr(op, hostID string, err error) error {
	switch {
	case isNotFound(err) && strings.Contains(strings.ToLower(err.Error()), "no such container"):
		return missing(op, hostID, err)
	case isConflict(err) && strings.Contains(err.Error(), "not running"),
		strings.Contains(err.Error(), "is paused"), strings.Contains(err.Error(), "is restarting"):
		return rtErr(CodeContainerNotRunning, op+": container is not running", err)
	default:
		return translate(op, err)
	}
}

// WaitExecReady waits until `true` can be exec'd in the host's container, polling with
// exponential backoff (50 ms doubling to 1 s), bounded by ctx and Config.ReadyTimeout.
//
// It gives up early, without waiting out the bound, when the container is missing
// (container_missing), was OOM-killed (out_of_memory) or has exited, or was never started,
// and the engine is not restarting it (container_not_running, with the exit code and the
// engine's error in the message). On timeout it returns runtime_error wrapping the last
// failure.
func (d *Docker) WaitExecReady(ctx context.Context, hostID string) error {
	op := "wait for container of host " + hostID + " to accept exec"
	ctx, cancel := context.WithTimeout(ctx, d.cfg.ReadyTimeout)
	defer cancel()
	delay := 50 * time.Millisecond
	var last error
	for {
		_, _, code, err := d.Exec(ctx, hostID, []string{"true"}, "")
		if err == nil && code == 0 {
			return nil
		}
		if err == nil {
			last = fmt.Errorf("`true` exited with code %d", code)
		} else {
			last = err
		}
		var re *app.RuntimeError
		if errors.As(err, &re) && (re.Code == CodeContainerMissing || re.Code == app.CodeRuntimeUnavailable) {
			return err
		}
		if stop := d.deadContainer(ctx, op, hostID); stop != nil {
			return stop
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			why := last.Error()
			if errors.As(last, &re) {
				why = re.Message
			}
			return rtErr(app.CodeRuntimeError, fmt.Sprintf("%s: not ready in time: %s", op, why), last)
		case <-t.C:
		}
		if delay *= 2; delay > time.Second {
			delay = time.Second
		}
	}
}

// deadContainer returns an error when the host's container cannot become ready without
// outside help (OOM-killed, exited, dead or never started, and not being restarted).
func (d *Docker) deadContainer(ctx context.Context, op, hostID string) error {
	cs, err := d.listHost(ctx, hostID)
	if err != nil || len(cs) == 0 {
		return nil // transient or racing a removal: let the next Exec decide
	}
	info, err := d.cli.ContainerInspect(ctx, cs[0].ID)
	if err != nil || info.State == nil {
		return nil
	}
	st := info.State
	if st.Running || st.Restarting {
		return nil
	}
	if st.OOMKilled {
		return rtErr(app.CodeOutOfMemory, op+": the container was killed for exceeding its memory limit", nil)
	}
	if st.Status == "exited" || st.Status == "dead" || st.Status == "created" {
		msg := fmt.Sprintf("%s: container is %s (exit code %d)", op, st.Status, st.ExitCode)
		if st.Error != "" {
			msg += ": " + st.Error
		}
		if isOOM(errors.New(st.Error)) {
			return rtErr(app.CodeOutOfMemory, msg, nil)
		}
		return rtErr(CodeContainerNotRunning, msg, nil)
	}
	return nil
}
