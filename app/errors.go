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
	Code       string
	Message    string
	Field      string        // the offending input field, when there is one
	RetryAfter time.Duration // for KindRateLimited
	Err        error         // cause, never shown to clients
}

func (e *Error) Error() string {
	msg := e.Code + ": " + e.Message
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

// Stable error codes of this package's refusals (besides the invalid_<field> of a refused
// input field, "not_found" and "forbidden"); clients may rely on them.
const (
	// CodeLastAdmin refuses a change that would leave no active administrator: disabling,
	// demoting, expiring or deleting the last one (409).
	CodeLastAdmin = "last_admin"
	// CodeInvalidLimit refuses a listing's limit outside its range (400).
	CodeInvalidLimit = "invalid_limit"
)

// Sentinel errors for domain cases; match them with errors.Is.
var (
	ErrNotFound          = &Error{Kind: KindNotFound}
	ErrConflict          = &Error{Kind: KindConflict}
	ErrInvalid           = &Error{Kind: KindInvalid}
	ErrUnauthenticated   = &Error{Kind: KindUnauthenticated}
	ErrForbidden         = &Error{Kind: KindForbidden}
	ErrRateLimited       = &Error{Kind: KindRateLimited}
	ErrInsufficientScope = &Error{Kind: KindForbidden, Code: "insufficient_scope"}
)

func notFound(what string) error {
	return &Error{Kind: KindNotFound, Code: "not_found", Message: what + " not found"}
}

func conflict(code, format string, args ...any) error {
	return &Error{Kind: KindConflict, Code: code, Message: fmt.Sprintf(format, args...)}
}

func invalid(field, format string, args ...any) error {
	return &Error{Kind: KindInvalid, Code: "invalid_" + fieldCode(field), Field: field, Message: fmt.Sprintf(format, args...)}
}

func badRequest(code, format string, args ...any) error {
	return &Error{Kind: KindBadRequest, Code: code, Message: fmt.Sprintf(format, args...)}
}

func forbidden(format string, args ...any) error {
	return &Error{Kind: KindForbidden, Code: "forbidden", Message: fmt.Sprintf(format, args...)}
}

func unavailable(code, format string, args ...any) error {
	return &Error{Kind: KindUnavailable, Code: code, Message: fmt.Sprintf(format, args...)}
}

// errUnauthenticated is the one generic answer to every authentication failure.
func errUnauthenticated() error {
	return &Error{Kind: KindUnauthenticated, Code: "unauthenticated", Message: "invalid or missing credentials"}
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
	return &Error{Kind: KindInternal, Code: "internal", Message: "internal error", Err: err}
}
