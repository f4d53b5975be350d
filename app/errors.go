package app

import (
	"errors"
	"fmt"
	"time"
)

// Kind classifies an error; each door maps it to its own status (HTTP status, SSH message).
type Kind int

// Error kinds.
const (
	KindInternal Kind = iota
	KindBadRequest
	KindInvalid
	KindUnauthenticated
	KindForbidden
	KindNotFound
	KindConflict
	KindTooLarge
	KindRateLimited
	KindUnavailable
	KindGone
)

// Error is a domain error with a stable code and a message safe to show a client.
type Error struct {
	Kind       Kind
	Code       ErrorCode
	Message    string
	Field      string        // the offending input field, when there is one
	RetryAfter time.Duration // for KindRateLimited
	Err        error         // cause, never shown to clients
}

func (e *Error) Error() string {
	msg := string(e.Code) + ": " + e.Message
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrNotFound) true for any *Error of the same kind (and, when the
// target names a code, the same code).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	if t.Kind != e.Kind {
		return false
	}
	return t.Code == "" || t.Code == e.Code
}

// Sentinel errors for domain cases; match them with errors.Is.
var (
	ErrNotFound          = &Error{Kind: KindNotFound}
	ErrConflict          = &Error{Kind: KindConflict}
	ErrInvalid           = &Error{Kind: KindInvalid}
	ErrUnauthenticated   = &Error{Kind: KindUnauthenticated}
	ErrForbidden         = &Error{Kind: KindForbidden}
	ErrRateLimited       = &Error{Kind: KindRateLimited}
	ErrInsufficientScope = &Error{Kind: KindForbidden, Code: CodeInsufficientScope}
)

func notFound(what string) error {
	return &Error{Kind: KindNotFound, Code: CodeNotFound, Message: what + " not found"}
}

func conflict(code ErrorCode, format string, args ...any) error {
	return &Error{Kind: KindConflict, Code: code, Message: fmt.Sprintf(format, args...)}
}

func invalid(field, format string, args ...any) error {
	return &Error{Kind: KindInvalid, Code: InvalidFieldCode(field), Field: field, Message: fmt.Sprintf(format, args...)}
}

func badRequest(code ErrorCode, format string, args ...any) error {
	return &Error{Kind: KindBadRequest, Code: code, Message: fmt.Sprintf(format, args...)}
}

func forbidden(format string, args ...any) error {
	return &Error{Kind: KindForbidden, Code: CodeForbidden, Message: fmt.Sprintf(format, args...)}
}

func unavailable(code ErrorCode, format string, args ...any) error {
	return &Error{Kind: KindUnavailable, Code: code, Message: fmt.Sprintf(format, args...)}
}

// errUnauthenticated is the one generic answer to every authentication failure.
func errUnauthenticated() error {
	return &Error{Kind: KindUnauthenticated, Code: CodeUnauthenticated, Message: "invalid or missing credentials"}
}

func fieldCode(field string) string {
	if field == "" {
		return "input"
	}
	b := []byte(field)
	for i, c := range b {
		if c == '.' || c == '[' || c == ']' {
			b[i] = '_'
		}
	}
	return string(b)
}

// AsError returns err as *Error, wrapping unknown errors as internal.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var re *RuntimeError
	if errors.As(err, &re) {
		if re.Code == CodeRuntimeUnavailable {
			return &Error{Kind: KindUnavailable, Code: re.Code, Message: re.Message, Err: err}
		}
		return &Error{Kind: KindInternal, Code: re.Code, Message: re.Message, Err: err}
	}
	return &Error{Kind: KindInternal, Code: CodeInternal, Message: "internal error", Err: err}
}
