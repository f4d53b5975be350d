package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// MaxBodyBytes is the largest request body accepted.
const MaxBodyBytes = 1 << 20

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func statusOf(k app.Kind) int {
	switch k {
	case app.KindBadRequest:
		return http.StatusBadRequest
	case app.KindInvalid:
		return http.StatusUnprocessableEntity
	case app.KindUnauthenticated:
		return http.StatusUnauthorized
	case app.KindForbidden:
		return http.StatusForbidden
	case app.KindNotFound:
		return http.StatusNotFound
	case app.KindConflict:
		return http.StatusConflict
	case app.KindTooLarge:
		return http.StatusRequestEntityTooLarge
	case app.KindRateLimited:
		return http.StatusTooManyRequests
	case app.KindUnavailable:
		return http.StatusServiceUnavailable
	case app.KindGone:
		return http.StatusGone
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if v == nil {
		return
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// writeSecret answers with a body holding a secret shown once: never cached.
func writeSecret(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, status, v)
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := app.AsError(err)
	status := statusOf(ae.Kind)
	if status == http.StatusInternalServerError {
		s.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	code, msg := ae.Code.String(), ae.Message
	if code == "" {
		code = strings.ToLower(strings.ReplaceAll(http.StatusText(status), " ", "_"))
	}
	if msg == "" {
		msg = http.StatusText(status)
	}
	switch status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="cloud-cli-proxy", error="invalid_token"`)
	case http.StatusTooManyRequests:
		secs := int(ae.RetryAfter.Round(time.Second) / time.Second)
		if secs < 1 {
			secs = 1
		}
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	case http.StatusForbidden:
		if ae.Code == app.CodeInsufficientScope {
			w.Header().Set("WWW-Authenticate", `Bearer realm="cloud-cli-proxy", error="insufficient_scope"`)
		}
	}
	writeJSON(w, status, errorBody{Error: errorDetail{Code: code, Message: msg, Field: ae.Field}})
}

func errBody(code app.ErrorCode, format string, args ...any) error {
	return &app.Error{Kind: app.KindBadRequest, Code: code, Message: fmt.Sprintf(format, args...)}
}

// decode reads one JSON object into v: unknown fields, wrong types, malformed JSON and
// trailing data are 400 naming the problem; a body over MaxBodyBytes is 413.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	return DecodeJSON(r.Body, v)
}

// DecodeJSON is the strict decoder shared by every request body.
func DecodeJSON(body io.Reader, v any) error {
	// The whole body is read first (decode bounds it): a value refused by a type's own
	// UnmarshalJSON (a time that is not RFC 3339) is then traced back to its field.
	data, err := io.ReadAll(body)
	if err != nil {
		return decodeError(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if isUnmarshalerError(err) {
			return unmarshalerError(err, data, v)
		}
		return decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errBody(app.CodeMalformedJSON, "request body must hold a single JSON object")
	}
	return nil
}

// isUnmarshalerError reports whether a decode error of an in-memory body came from a type's
// own UnmarshalJSON rather than from encoding/json.
func isUnmarshalerError(err error) bool {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	var ie *json.InvalidUnmarshalError
	return !errors.As(err, &se) && !errors.As(err, &te) && !errors.As(err, &ie) && !errors.Is(err, io.EOF) &&
		!errors.Is(err, io.ErrUnexpectedEOF) && !strings.HasPrefix(err.Error(), "json: unknown field ")
}

// unmarshalerError is a 400 wrong_type naming the top-level field whose value was refused:
// each field is decoded alone into a fresh value until one fails.
func unmarshalerError(err error, data []byte, v any) error {
	msg := "field %q has a value of the wrong form"
	var pe *time.ParseError
	if errors.As(err, &pe) || strings.Contains(err.Error(), "Time.UnmarshalJSON") {
		msg = "field %q must be an RFC 3339 time, e.g. 2026-12-31T23:59:59Z"
	}
	var fields map[string]json.RawMessage
	rt := reflect.TypeOf(v)
	if json.Unmarshal(data, &fields) == nil && rt != nil && rt.Kind() == reflect.Pointer {
		keys := make([]string, 0, len(fields))
		for k := range fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			one, _ := json.Marshal(map[string]json.RawMessage{k: fields[k]})
			if json.Unmarshal(one, reflect.New(rt.Elem()).Interface()) != nil {
				return &app.Error{Kind: app.KindBadRequest, Code: app.CodeWrongType, Field: k, Message: fmt.Sprintf(msg, k)}
			}
		}
	}
	return errBody(app.CodeWrongType, "a field has a value of the wrong form")
}

func decodeError(err error) error {
	var mbe *http.MaxBytesError
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &mbe):
		return &app.Error{Kind: app.KindTooLarge, Code: app.CodeBodyTooLarge, Message: fmt.Sprintf("request body exceeds %d bytes", mbe.Limit)}
	case errors.Is(err, io.EOF):
		return errBody(app.CodeEmptyBody, "request body is empty; a JSON object is required")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errBody(app.CodeMalformedJSON, "request body is truncated JSON")
	case errors.As(err, &se):
		return errBody(app.CodeMalformedJSON, "malformed JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			return errBody(app.CodeWrongType, "request body must be a JSON object")
		}
		return &app.Error{Kind: app.KindBadRequest, Code: app.CodeWrongType, Field: field,
			Message: fmt.Sprintf("field %q must be of type %s, not %s", field, te.Type.String(), te.Value)}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &app.Error{Kind: app.KindBadRequest, Code: app.CodeUnknownField, Field: field,
			Message: fmt.Sprintf("unknown field %q", field)}
	}
	var ae *app.Error
	if errors.As(err, &ae) {
		return ae
	}
	return errBody(app.CodeMalformedJSON, "request body is not valid JSON: %v", err)
}
