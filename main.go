// Command cloud-cli-proxy runs the control plane: `go run . serve`.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/cmd"
)

// defaultGCPercent trades a little memory for shorter request tails: the server's live heap is
// small, so the default GOGC=100 collects often and GC pauses dominate p99 latency on two cores.
// An operator's GOGC environment variable wins.
const defaultGCPercent = 400

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := cmd.Main(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
