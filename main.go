// Command cloud-cli-proxy runs the control plane: `go run . serve`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/cmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := cmd.Main(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
