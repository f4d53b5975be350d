package cmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/metrics"
)

// metricsOnAPI reports whether METRICS_ADDR puts /metrics on the API port (admins only).
func (c Config) metricsOnAPI() bool {
	return c.MetricsAddr == "api" || (c.MetricsAddr != "" && c.MetricsAddr == c.HTTPAddr)
}

// serveMetrics starts the metrics listener of METRICS_ADDR when it is an address of its
// own; stop shuts it down. With METRICS_ADDR empty or on the API port it does nothing.
func serveMetrics(c Config, m *metrics.Metrics, log *slog.Logger) (stop func(context.Context), err error) {
	if c.MetricsAddr == "" || c.metricsOnAPI() {
		return func(context.Context) {}, nil
	}
	ln, err := net.Listen("tcp", c.MetricsAddr)
	if err != nil {
		return nil, fmt.Errorf("config METRICS_ADDR=%q: %w", c.MetricsAddr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener stopped", "err", err)
		}
	}()
	log.Info("serving", "metrics", "http://"+ln.Addr().String()+"/metrics")
	return func(ctx context.Context) { _ = srv.Shutdown(ctx) }, nil
}

// fileSize is the size of a file (the database's, for the metrics).
func fileSize(path string) func() (int64, error) {
	return func() (int64, error) {
		fi, err := os.Stat(path)
		if err != nil {
			return 0, err
		}
		return fi.Size(), nil
	}
}
