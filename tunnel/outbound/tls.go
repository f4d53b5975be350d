package outbound

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// Config is a proxy_config decoded for use: the fields app.ProxyConfig knows plus the
// sing-box fields this package honours beyond them.
type Config struct {
	app.ProxyConfig
	// PacketEncoding is vmess/vless's UDP encoding: "" (plain) or "xudp". vless defaults to
	// xudp when the field is absent, as sing-box does.
	PacketEncoding string
	// GlobalPadding and AuthenticatedLength are vmess options.
	GlobalPadding, AuthenticatedLength bool
	// CertificatePEM is tls.certificate: PEM certificates trusted for the server instead of
	// the system roots.
	CertificatePEM []byte
}

// stringList decodes a JSON string or list of strings (sing-box's "listable").
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*l = []string{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*l = many
	return nil
}

type enabledBlock struct {
	Enabled bool `json:"enabled"`
}

// extras are the sing-box fields read here beyond app.ProxyConfig, and those that would
// change the wire protocol in a way this package does not speak (refused rather than
// silently ignored: a proxy that half-works is worse than a clear error).
type extras struct {
	PacketEncoding      *string         `json:"packet_encoding"`
	GlobalPadding       bool            `json:"global_padding"`
	AuthenticatedLength bool            `json:"authenticated_length"`
	UDPOverTCP          json.RawMessage `json:"udp_over_tcp"`
	Multiplex           *enabledBlock   `json:"multiplex"`
	Transport           json.RawMessage `json:"transport"`
	Plugin              string          `json:"plugin"`
	Detour              string          `json:"detour"`
	TLS                 *struct {
		Certificate     stringList    `json:"certificate"`
		CertificatePath string        `json:"certificate_path"`
		Reality         *enabledBlock `json:"reality"`
		ECH             *enabledBlock `json:"ech"`
	} `json:"tls"`
}

func invalid(field, format string, args ...any) error {
	return &app.Error{Kind: app.KindInvalid, Code: "invalid_proxy_config", Field: "proxy_config" + field,
		Message: "proxy_config" + field + ": " + fmt.Sprintf(format, args...)}
}

// ParseConfig validates a proxy_config (app.ValidateProxyConfig) and decodes it.
func ParseConfig(raw json.RawMessage) (*Config, error) {
	raw, err := app.ValidateProxyConfig(raw)
	if err != nil {
		return nil, err
	}
	pc, err := app.ParseProxyConfig(raw)
	if err != nil {
		return nil, err
	}
	var x extras
	if err := json.Unmarshal(raw, &x); err != nil {
		return nil, invalid("", "%v", err)
	}
	c := &Config{ProxyConfig: pc, GlobalPadding: x.GlobalPadding, AuthenticatedLength: x.AuthenticatedLength}
	switch {
	case x.Transport != nil && !bytes.Equal(bytes.TrimSpace(x.Transport), []byte("null")):
		return nil, invalid(".transport", "v2ray transports are not supported")
	case x.Multiplex != nil && x.Multiplex.Enabled:
		return nil, invalid(".multiplex", "multiplex is not supported")
	case x.Plugin != "":
		return nil, invalid(".plugin", "shadowsocks plugins are not supported")
	case x.Detour != "":
		return nil, invalid(".detour", "detour is not supported: the outbound dials the server directly")
	case len(x.UDPOverTCP) > 0 && !bytes.Equal(x.UDPOverTCP, []byte("false")) && !bytes.Equal(x.UDPOverTCP, []byte("null")):
		return nil, invalid(".udp_over_tcp", "udp_over_tcp is not supported")
	}
	if x.PacketEncoding != nil {
		c.PacketEncoding = *x.PacketEncoding
	} else if pc.Type == "vless" {
		c.PacketEncoding = "xudp"
	}
	switch c.PacketEncoding {
	case "", "xudp":
	default:
		return nil, invalid(".packet_encoding", "packet_encoding must be empty or xudp")
	}
	if c.PacketEncoding != "" && pc.Type != "vmess" && pc.Type != "vless" {
		return nil, invalid(".packet_encoding", "packet_encoding is only for vmess and vless")
	}
	switch pc.Network {
	case "", "tcp", "udp":
	default:
		return nil, invalid(".network", "network must be empty, tcp or udp")
	}
	if c.TLSEnabled() {
		if pc.Type == "socks" || pc.Type == "shadowsocks" {
			return nil, invalid(".tls", "%s has no TLS", pc.Type)
		}
		if x.TLS != nil {
			if x.TLS.CertificatePath != "" {
				return nil, invalid(".tls.certificate_path", "certificate_path is not supported: give the PEM inline in tls.certificate")
			}
			if x.TLS.Reality != nil && x.TLS.Reality.Enabled {
				return nil, invalid(".tls.reality", "reality is not supported")
			}
			if x.TLS.ECH != nil && x.TLS.ECH.Enabled {
				return nil, invalid(".tls.ech", "ech is not supported")
			}
			if len(x.TLS.Certificate) > 0 {
				c.CertificatePEM = []byte(strings.Join(x.TLS.Certificate, "\n"))
				if !x509.NewCertPool().AppendCertsFromPEM(c.CertificatePEM) {
					return nil, invalid(".tls.certificate", "no PEM certificate found")
				}
			}
		}
	}
	if pc.Type == "vless" && pc.Flow != "" {
		// sing-vmess's vision reads crypto/tls's unexported buffers through unsafe pointer
		// arithmetic (a checkptr fault under -race, memory corruption the day their layout
		// changes): not in this server process.
		return nil, invalid(".flow", "flow %s is not supported: use vless without flow", pc.Flow)
	}
	return c, nil
}

// TLSEnabled reports whether the connection to the server is wrapped in TLS.
func (c *Config) TLSEnabled() bool { return c.TLS != nil && c.TLS.Enabled }

// ServerAddr is the proxy server as host:port.
func (c *Config) ServerAddr() string {
	return net.JoinHostPort(c.Server, strconv.Itoa(c.ServerPort))
}

// UDP reports whether the outbound carries UDP.
func (c *Config) UDP() bool {
	if c.Network == "tcp" {
		return false
	}
	switch c.Type {
	case "socks":
		return c.Version == "" || c.Version == "5"
	case "shadowsocks", "vmess", "vless", "trojan":
		return true
	}
	return false
}

// TCP reports whether the outbound carries TCP ("network": "udp" turns it off).
func (c *Config) TCP() bool { return c.Network != "udp" }

// clientTLS is the TLS configuration toward the server, or nil without TLS.
func (c *Config) clientTLS() *tls.Config {
	if !c.TLSEnabled() {
		return nil
	}
	tc := &tls.Config{
		ServerName:         c.TLS.ServerName,
		InsecureSkipVerify: c.TLS.Insecure,
		NextProtos:         c.TLS.ALPN,
		MinVersion:         tls.VersionTLS12,
	}
	if tc.ServerName == "" {
		tc.ServerName = c.Server // an IP literal is checked against the certificate's IP SANs
	}
	if len(c.CertificatePEM) > 0 {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(c.CertificatePEM)
		tc.RootCAs = pool
	}
	return tc
}
