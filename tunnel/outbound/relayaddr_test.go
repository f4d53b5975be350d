package outbound

import (
	"net/netip"
	"testing"

	M "github.com/sagernet/sing/common/metadata"
)

// A socks server's UDP relay address is taken as given only when it is a public one (or
// a name); an unspecified, loopback, private or link-local one becomes the server's own
// address, with the relay's port.
func TestUDPRelayAddr(t *testing.T) {
	ipServer := M.SocksaddrFrom(netip.MustParseAddr("203.0.113.7"), 1080)
	nameServer := M.ParseSocksaddrHostPort("proxy.example.com", 1080)
	for _, tc := range []struct {
		relay string
		keep  bool
	}{
		{"0.0.0.0", false},
		{"::", false},
		{"127.0.0.1", false},
		{"127.5.6.7", false},
		{"::1", false},
		{"10.1.2.3", false},
		{"172.16.0.9", false},
		{"192.168.1.1", false},
		{"fd00::1", false},
		{"169.254.169.254", false},
		{"fe80::1", false},
		{"::ffff:127.0.0.1", false},
		{"::ffff:169.254.169.254", false},
		{"198.51.100.20", true},
		{"203.0.113.7", true},
		{"2001:db8::5", true},
	} {
		relay := M.SocksaddrFrom(netip.MustParseAddr(tc.relay), 40000)
		for _, server := range []M.Socksaddr{ipServer, nameServer} {
			got := udpRelayAddr(server, relay)
			want := relay
			if !tc.keep {
				want = M.Socksaddr{Addr: server.Addr, Fqdn: server.Fqdn, Port: 40000}
			}
			if got != want {
				t.Errorf("relay %s, server %s: got %s, want %s", tc.relay, server, got, want)
			}
		}
	}
	// A relay given by name is left to the resolver.
	named := M.ParseSocksaddrHostPort("relay.example.com", 40000)
	if got := udpRelayAddr(ipServer, named); got != named {
		t.Errorf("named relay: got %s", got)
	}
}
