package cmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/tunnel"
)

// CheckService runs the egress check service ("check-service" subcommand): HTTP "what is
// my IP" plus an authoritative DNS server for the check zone that logs which resolvers ask.
// It runs until SIGINT or SIGTERM.
func CheckService(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check-service", flag.ContinueOnError)
	fs.SetOutput(stderr)
	httpAddr := fs.String("http-addr", ":80", "HTTP listen address (GET / answers the client's IP, GET /dns-log?name= the resolvers that asked)")
	dnsAddr := fs.String("dns-addr", ":53", "DNS listen address, UDP and TCP")
	zone := fs.String("zone", "", "DNS zone delegated to this service (required)")
	answer := fs.String("answer-ip", "", "IPv4 address of every A answer (default: the HTTP listen address if specific, else 192.0.2.1)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("check-service: unexpected argument %q", fs.Arg(0))
	}
	if *zone == "" {
		return errors.New("check-service: --zone is required")
	}
	svc := &tunnel.CheckService{HTTPAddr: *httpAddr, DNSAddr: *dnsAddr, Zone: *zone,
		Logger: slog.New(slog.NewTextHandler(stderr, nil))}
	if *answer != "" {
		a, err := netip.ParseAddr(*answer)
		if err != nil || !a.Is4() {
			return fmt.Errorf("check-service: --answer-ip must be an IPv4 address")
		}
		svc.AnswerIP = a
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(stdout, "check service: http %s, dns %s, zone %s\n", *httpAddr, *dnsAddr, *zone)
	return svc.Run(ctx)
}
