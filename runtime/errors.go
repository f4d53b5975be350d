package runtime

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// Error codes of this package's (*app.RuntimeError).Code, besides app.CodeRuntimeError and
// the others every runtime shares; they are defined (and listed) with the rest in app.
const (
	// CodeContainerMissing: the host has no container (Start, Stop, Exec, WaitExecReady).
	CodeContainerMissing = app.CodeContainerMissing
	// CodeContainerNotRunning: the host's container exists but is not running (Exec,
	// WaitExecReady when it exited without being OOM-killed).
	CodeContainerNotRunning = app.CodeContainerNotRunning
)

// rtErr builds an *app.RuntimeError.
func rtErr(code app.ErrorCode, msg string, cause error) *app.RuntimeError {
	return &app.RuntimeError{Code: code, Message: msg, Err: cause}
}

// translate turns an error from the Docker client into an *app.RuntimeError. op says
// what was being done ("start container for host h1"). Errors that already are
// *app.RuntimeError pass through unchanged.
//
//   - engine unreachable            → app.CodeRuntimeUnavailable, wraps app.ErrRuntimeUnavailable
//   - message mentions out of memory → app.CodeOutOfMemory
//   - anything else                 → app.CodeRuntimeError
//
// Image-missing and container-missing are recognised by the callers, which know what a
// "not found" means for their operation.
func translate(op string, err error) error {
	if err == nil {
		return nil
	}
	var re *app.RuntimeError
	if errors.As(err, &re) {
		return err
	}
	switch {
	case isUnavailable(err):
		return rtErr(app.CodeRuntimeUnavailable, op+": container engine unreachable",
			fmt.Errorf("%w: %w", app.ErrRuntimeUnavailable, err))
	case isOOM(err):
		return rtErr(app.CodeOutOfMemory, op+": out of memory: "+clean(err), err)
	default:
		return rtErr(app.CodeRuntimeError, op+": "+clean(err), err)
	}
}

// isUnavailable reports whether err means the engine could not be reached at all.
func isUnavailable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if client.IsErrConnectionFailed(err) {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		strings.Contains(err.Error(), "connection refused")
}

func isOOM(err error) bool {
	s := strings.ToLower(err.Error())
	return strings.Contains(s, "out of memory") || strings.Contains(s, "oom-kill") ||
		strings.Contains(s, "oom kill") || strings.Contains(s, "oomkilled")
}

func isNotFound(err error) bool { return err != nil && cerrdefs.IsNotFound(err) }

func isConflict(err error) bool { return err != nil && cerrdefs.IsConflict(err) }

// clean makes an engine error message readable: one line, without the client's
// "Error response from daemon:" prefix.
func clean(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "Error response from daemon: ")
	s = strings.ReplaceAll(s, "\n", " ")
	return strings.TrimSpace(s)
}
