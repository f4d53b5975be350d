package tunnel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Limits of the check service's resolver log: it is a diagnostic, not a store.
const (
	checkLogMaxNames     = 4096
	checkLogMaxResolvers = 16
)

// CheckService is the public endpoint the egress checks talk to. It runs outside the
// tunnels, on an address of the internet:
//
//   - HTTP "what is my IP": GET / answers the client's remote IP as text;
//     GET /dns-log?name=<name> answers the JSON list of resolver IPs that asked for name.
//   - DNS, authoritative for Zone: an A query for <anything>.<Zone> is answered with
//     AnswerIP and the address of the resolver that asked is logged.
//
// The zone must be delegated to DNSAddr for the leak check to see real resolvers.
type CheckService struct {
	HTTPAddr string // e.g. ":80"
	DNSAddr  string // e.g. ":53" (UDP and TCP)
	Zone     string // e.g. "check.example.com"
	// AnswerIP is the address of every A answer; when invalid, the HTTP listen address
	// if it is a specific IPv4 address, else 192.0.2.1.
	AnswerIP netip.Addr
	Logger   *slog.Logger

	mu     sync.Mutex
	byName map[string][]string
	order  []string
}

// Run listens on HTTPAddr and DNSAddr and serves until ctx ends.
func (s *CheckService) Run(ctx context.Context) error {
	if s.HTTPAddr == "" || s.DNSAddr == "" || s.Zone == "" {
		return errors.New("check service: HTTPAddr, DNSAddr and Zone are required")
	}
	var lc net.ListenConfig
	hl, err := lc.Listen(ctx, "tcp", s.HTTPAddr)
	if err != nil {
		return fmt.Errorf("check service: http: %w", err)
	}
	pc, err := lc.ListenPacket(ctx, "udp", s.DNSAddr)
	if err != nil {
		hl.Close()
		return fmt.Errorf("check service: dns: %w", err)
	}
	tl, err := lc.Listen(ctx, "tcp", s.DNSAddr)
	if err != nil {
		hl.Close()
		pc.Close()
		return fmt.Errorf("check service: dns over tcp: %w", err)
	}
	return s.Serve(ctx, hl, pc, tl)
}

// Serve serves on listeners the caller opened (dnsTCP may be nil) until ctx ends, and
// closes them. It lets a caller open the sockets somewhere else, e.g. in a namespace.
func (s *CheckService) Serve(ctx context.Context, httpLn net.Listener, dnsPC net.PacketConn, dnsTCP net.Listener) error {
	zone := dns.Fqdn(strings.ToLower(strings.TrimSpace(s.Zone)))
	if _, ok := dns.IsDomainName(zone); !ok || zone == "." {
		httpLn.Close()
		dnsPC.Close()
		if dnsTCP != nil {
			dnsTCP.Close()
		}
		return fmt.Errorf("check service: bad zone %q", s.Zone)
	}
	answer := s.AnswerIP
	if !answer.Is4() {
		answer = netip.MustParseAddr("192.0.2.1")
		if ap, err := netip.ParseAddrPort(httpLn.Addr().String()); err == nil && ap.Addr().Unmap().Is4() && !ap.Addr().IsUnspecified() {
			answer = ap.Addr().Unmap()
		}
	}
	log := s.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}

	mux := dns.NewServeMux()
	mux.HandleFunc(".", func(w dns.ResponseWriter, r *dns.Msg) { s.serveDNS(w, r, zone, answer, log) })
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}

	servers := []func() error{
		func() error { return hs.Serve(httpLn) },
		func() error { return (&dns.Server{PacketConn: dnsPC, Handler: mux}).ActivateAndServe() },
	}
	var tcpSrv *dns.Server
	if dnsTCP != nil {
		tcpSrv = &dns.Server{Listener: dnsTCP, Handler: mux}
		servers = append(servers, tcpSrv.ActivateAndServe)
	}
	errc := make(chan error, len(servers))
	for _, f := range servers {
		go func() { errc <- f() }()
	}
	log.Info("check service running", "http", httpLn.Addr().String(), "dns", dnsPC.LocalAddr().String(), "zone", zone)
	var first error
	select {
	case <-ctx.Done():
	case first = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	hs.Shutdown(sctx)
	dnsPC.Close()
	if dnsTCP != nil {
		dnsTCP.Close()
	}
	if first != nil && !errors.Is(first, http.ErrServerClosed) && ctx.Err() == nil {
		return fmt.Errorf("check service: %w", first)
	}
	return nil
}

// Handler is the HTTP side of the service.
func (s *CheckService) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil {
			http.Error(w, "cannot tell your address", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintln(w, ap.Addr().Unmap().String())
	})
	mux.HandleFunc("GET /dns-log", func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("name")
		if name == "" {
			http.Error(w, "name is required", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(s.Resolvers(name))
	})
	return mux
}

// Resolvers returns the addresses of the resolvers that asked for name (never nil).
func (s *CheckService) Resolvers(name string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string{}, s.byName[normName(name)]...)
}

func normName(n string) string { return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(n)), ".") }

func (s *CheckService) record(name, resolver string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byName == nil {
		s.byName = map[string][]string{}
	}
	name = normName(name)
	list, seen := s.byName[name]
	if !seen {
		if len(s.order) >= checkLogMaxNames {
			delete(s.byName, s.order[0])
			s.order = s.order[1:]
		}
		s.order = append(s.order, name)
	}
	for _, r := range list {
		if r == resolver {
			return
		}
	}
	if len(list) < checkLogMaxResolvers {
		s.byName[name] = append(list, resolver)
	}
}

func (s *CheckService) serveDNS(w dns.ResponseWriter, r *dns.Msg, zone string, answer netip.Addr, log *slog.Logger) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	if len(r.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	qname := strings.ToLower(q.Name)
	if !dns.IsSubDomain(zone, qname) {
		m.Authoritative = false
		m.Rcode = dns.RcodeRefused
		w.WriteMsg(m)
		return
	}
	resolver := ""
	if ap, err := netip.ParseAddrPort(w.RemoteAddr().String()); err == nil {
		resolver = ap.Addr().Unmap().String()
	}
	s.record(qname, resolver)
	log.Debug("check service dns query", "name", qname, "type", dns.TypeToString[q.Qtype], "resolver", resolver)
	if q.Qclass == dns.ClassINET && (q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY) {
		m.Answer = append(m.Answer, &dns.A{
			Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 0},
			A:   net.IP(answer.AsSlice()),
		})
	}
	w.WriteMsg(m)
}
