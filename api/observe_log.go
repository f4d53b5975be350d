package api

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// levelOf is the log level of a request's line: server errors are errors, health and
// metrics probes debug, the rest info.
func levelOf(route string, status int) slog.Level {
	switch {
	case status >= 500:
		return slog.LevelError
	case route == "/healthz" || route == "/metrics":
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// requestIDHandler adds the request id of the context to every record logged with one
// (InfoContext, LogAttrs, ...), so the lines a request causes can be found by its id.
type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := app.RequestIDFrom(ctx); id != "" && !hasRequestID(r) {
		r = r.Clone()
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(as)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}

func hasRequestID(r slog.Record) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		found = a.Key == "request_id"
		return !found
	})
	return found
}

// slogAttrs are the attributes of a request's line. The route pattern stands for the path,
// which is not logged: a path may carry a secret (a token value pasted where an id goes).
func slogAttrs(r *http.Request, route string, status int, d time.Duration) []slog.Attr {
	return []slog.Attr{
		slog.String("method", r.Method),
		slog.String("route", route),
		slog.Int("status", status),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000),
		slog.String("ip", clientIP(r)),
	}
}
