package app

import (
	"bytes"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// validateText checks a free-text value such as a name: between min and max characters
// (counted as Unicode code points, not bytes) and no control characters (C0, DEL, C1).
// Access-token names and SSH key names share it.
func validateText(field, v string, min, max int) error {
	if n := utf8.RuneCountInString(v); n < min || n > max {
		if min == 0 {
			return invalid(field, "%s must be at most %d characters", field, max)
		}
		return invalid(field, "%s must be %d-%d characters", field, min, max)
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return invalid(field, "%s must not contain control characters", field)
		}
	}
	return nil
}

// sanitizeText makes v fit validateText's rules: control characters become spaces,
// surrounding spaces go, and it is cut to max characters.
func sanitizeText(v string, max int) string {
	b := []rune(v)
	for i, r := range b {
		if unicode.IsControl(r) {
			b[i] = ' '
		}
	}
	if len(b) > max {
		b = b[:max]
	}
	return strings.TrimSpace(string(b))
}

// OptionalTime is a JSON time that remembers whether its key was present at all: Set is
// false when the key was absent, Time is nil when it was null. Its value is an RFC 3339 time.
type OptionalTime struct {
	Set  bool
	Time *time.Time
}

// UnmarshalJSON is called only for a key that is present.
func (o *OptionalTime) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		*o = OptionalTime{Set: true}
		return nil
	}
	var t time.Time
	if err := t.UnmarshalJSON(b); err != nil {
		return err
	}
	*o = OptionalTime{Set: true, Time: &t}
	return nil
}

// MarshalJSON writes the time, or null.
func (o OptionalTime) MarshalJSON() ([]byte, error) {
	if o.Time == nil {
		return []byte("null"), nil
	}
	return o.Time.MarshalJSON()
}

// Listing limits: the largest page of GET …/events and GET …/tasks.
const (
	MaxEventLimit = 500
	MaxTaskLimit  = 1000
)

// ParseLimit reads a listing's limit parameter: "" is 0 (the listing's default), anything
// but a whole number from 1 to max is a 400 invalid_limit.
func ParseLimit(raw string, max int) (int, error) {
	if raw == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n == 0 {
		return 0, limitError(max)
	}
	return n, checkLimit(n, max)
}

// checkLimit accepts 0 (the default) and 1..max.
func checkLimit(n, max int) error {
	if n < 0 || n > max {
		return limitError(max)
	}
	return nil
}

func limitError(max int) error {
	return &Error{Kind: KindBadRequest, Code: CodeInvalidLimit, Field: "limit",
		Message: "limit must be a number between 1 and " + strconv.Itoa(max)}
}
