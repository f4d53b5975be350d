// Package egressconf is the schema of a proxy egress's proxy_config, a sing-box outbound
// (socks, http, shadowsocks, vmess, vless or trojan, with an optional tls block), and its
// validation: the one place that decides what such a config means and which settings this
// product runs. app validates an egress IP with it when it is saved; tunnel/outbound reads
// the same decoded Outbound to dial. It imports nothing of the project.
package egressconf

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// Outbound is a proxy_config decoded: the sing-box fields this product reads. Other
// sing-box fields are kept in the stored config as given, unless they would change the
// wire protocol in a way the tunnel does not speak (then Parse refuses them).
type Outbound struct {
	Type       string `json:"type"`
	Server     string `json:"server"`
	ServerPort int    `json:"server_port"`
	Username   string `json:"username,omitempty"`
	Password   string `json:"password,omitempty"`
	Method     string `json:"method,omitempty"`
	UUID       string `json:"uuid,omitempty"`
	Security   string `json:"security,omitempty"`
	AlterID    *int   `json:"alter_id,omitempty"`
	Flow       string `json:"flow,omitempty"`
	Version    string `json:"version,omitempty"`
	TLS        *TLS   `json:"tls,omitempty"`
	Network    string `json:"network,omitempty"`

	// PacketEncoding is vmess/vless's UDP encoding: "" (plain) or "xudp". vless defaults to
	// xudp when the field is absent, as sing-box does.
	PacketEncoding string `json:"-"`
	// GlobalPadding and AuthenticatedLength are vmess options.
	GlobalPadding       bool `json:"-"`
	AuthenticatedLength bool `json:"-"`
	// CertificatePEM is tls.certificate: PEM certificates trusted for the server instead
	// of the system roots.
	CertificatePEM []byte `json:"-"`
}

// TLS is the tls block of an outbound.
type TLS struct {
	Enabled    bool     `json:"enabled"`
	ServerName string   `json:"server_name,omitempty"`
	Insecure   bool     `json:"insecure,omitempty"`
	ALPN       []string `json:"alpn,omitempty"`
}

// Error is a proxy_config refused. Field names the offending setting
// ("proxy_config.server"); Message says why, naming it too.
type Error struct {
	Field   string
	Message string
}

func (e *Error) Error() string { return e.Message }

// Invalid is the Error of a setting of proxy_config: field is its path below proxy_config
// with a leading dot (".server", ".tls.certificate"), or "" for the whole config.
func Invalid(field, format string, args ...any) *Error {
	return &Error{Field: "proxy_config" + field, Message: "proxy_config" + field + ": " + fmt.Sprintf(format, args...)}
}

func errorf(field, format string, args ...any) *Error {
	return &Error{Field: field, Message: fmt.Sprintf(format, args...)}
}

var ssMethods = map[string]bool{
	"aes-128-gcm": true, "aes-192-gcm": true, "aes-256-gcm": true,
	"chacha20-ietf-poly1305": true, "xchacha20-ietf-poly1305": true,
	"2022-blake3-aes-128-gcm": true, "2022-blake3-aes-256-gcm": true, "2022-blake3-chacha20-poly1305": true,
	"none": true,
}

var vmessSecurity = map[string]bool{"": true, "auto": true, "none": true, "zero": true,
	"aes-128-gcm": true, "chacha20-poly1305": true, "aes-128-ctr": true}

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

// extras are the sing-box fields read beyond Outbound's own, and those that would change
// the wire protocol in a way the tunnel does not speak (refused rather than silently
// ignored: a proxy that half-works is worse than a clear error).
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

// Validate checks a proxy_config (Parse) and returns it re-encoded compactly, as stored.
func Validate(raw json.RawMessage) (json.RawMessage, error) {
	if _, err := Parse(raw); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, errorf("proxy_config", "proxy_config must be a JSON object")
	}
	return buf.Bytes(), nil
}

// Parse checks a proxy_config, the required fields of its type and every setting it
// has, and decodes it. Its errors are *Error.
func Parse(raw json.RawMessage) (*Outbound, error) {
	var o Outbound
	var fields map[string]json.RawMessage
	if len(raw) == 0 {
		return nil, errorf("proxy_config", "proxy_config is required for tunnel_type proxy")
	}
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return nil, errorf("proxy_config", "proxy_config must be a JSON object")
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		return nil, errorf("proxy_config", "proxy_config has a field of the wrong type: %s", jsonFieldOf(err))
	}
	if err := o.checkFields(); err != nil {
		return nil, err
	}
	if err := o.readExtras(raw); err != nil {
		return nil, err
	}
	return &o, nil
}

func jsonFieldOf(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return te.Field
	}
	return "unknown"
}

// checkFields checks the fields of Outbound's own: the server and what each type requires.
func (o *Outbound) checkFields() error {
	if err := checkServer("proxy_config.server", o.Server); err != nil {
		return err
	}
	if o.ServerPort < 1 || o.ServerPort > 65535 {
		return errorf("proxy_config.server_port", "proxy_config.server_port must be a port between 1 and 65535")
	}
	need := func(field, v string) error {
		if v == "" {
			return errorf("proxy_config."+field, "proxy_config.%s is required for %s", field, o.Type)
		}
		return nil
	}
	switch o.Type {
	case "socks":
		if o.Version != "" && o.Version != "5" && o.Version != "4" && o.Version != "4a" {
			return errorf("proxy_config.version", "proxy_config.version must be 4, 4a or 5")
		}
		if (o.Username == "") != (o.Password == "") && o.Password != "" {
			return errorf("proxy_config.username", "proxy_config.username is required with a password")
		}
	case "http":
		if o.Password != "" && o.Username == "" {
			return errorf("proxy_config.username", "proxy_config.username is required with a password")
		}
	case "shadowsocks":
		if err := need("method", o.Method); err != nil {
			return err
		}
		if !ssMethods[o.Method] {
			return errorf("proxy_config.method", "proxy_config.method %q is not a supported shadowsocks cipher", o.Method)
		}
		if o.Method != "none" {
			if err := need("password", o.Password); err != nil {
				return err
			}
		}
	case "vmess", "vless":
		if err := need("uuid", o.UUID); err != nil {
			return err
		}
		if _, err := uuid.Parse(o.UUID); err != nil {
			return errorf("proxy_config.uuid", "proxy_config.uuid must be a UUID")
		}
		if o.Type == "vmess" {
			if !vmessSecurity[o.Security] {
				return errorf("proxy_config.security", "proxy_config.security is not a vmess cipher")
			}
			if o.AlterID != nil && *o.AlterID < 0 {
				return errorf("proxy_config.alter_id", "proxy_config.alter_id must be 0 or more")
			}
		} else if o.Flow != "" && o.Flow != "xtls-rprx-vision" {
			return errorf("proxy_config.flow", "proxy_config.flow must be empty or xtls-rprx-vision")
		}
	case "trojan":
		if err := need("password", o.Password); err != nil {
			return err
		}
	case "":
		return errorf("proxy_config.type", "proxy_config.type is required")
	default:
		return errorf("proxy_config.type", "proxy_config.type must be socks, http, shadowsocks, vmess, vless or trojan")
	}
	if o.TLS != nil && o.TLS.ServerName != "" {
		if err := checkServer("proxy_config.tls.server_name", o.TLS.ServerName); err != nil {
			return err
		}
	}
	return nil
}

// readExtras reads the sing-box settings beyond Outbound's own fields and refuses those
// the tunnel does not run.
func (o *Outbound) readExtras(raw json.RawMessage) error {
	var x extras
	if err := json.Unmarshal(raw, &x); err != nil {
		return Invalid("", "%v", err)
	}
	o.GlobalPadding, o.AuthenticatedLength = x.GlobalPadding, x.AuthenticatedLength
	switch {
	case x.Transport != nil && !bytes.Equal(bytes.TrimSpace(x.Transport), []byte("null")):
		return Invalid(".transport", "v2ray transports are not supported")
	case x.Multiplex != nil && x.Multiplex.Enabled:
		return Invalid(".multiplex", "multiplex is not supported")
	case x.Plugin != "":
		return Invalid(".plugin", "shadowsocks plugins are not supported")
	case x.Detour != "":
		return Invalid(".detour", "detour is not supported: the outbound dials the server directly")
	case len(x.UDPOverTCP) > 0 && !bytes.Equal(x.UDPOverTCP, []byte("false")) && !bytes.Equal(x.UDPOverTCP, []byte("null")):
		return Invalid(".udp_over_tcp", "udp_over_tcp is not supported")
	}
	if x.PacketEncoding != nil {
		o.PacketEncoding = *x.PacketEncoding
	} else if o.Type == "vless" {
		o.PacketEncoding = "xudp"
	}
	switch o.PacketEncoding {
	case "", "xudp":
	default:
		return Invalid(".packet_encoding", "packet_encoding must be empty or xudp")
	}
	if o.PacketEncoding != "" && o.Type != "vmess" && o.Type != "vless" {
		return Invalid(".packet_encoding", "packet_encoding is only for vmess and vless")
	}
	switch o.Network {
	case "", "tcp", "udp":
	default:
		return Invalid(".network", "network must be empty, tcp or udp")
	}
	if o.TLSEnabled() {
		if o.Type == "socks" || o.Type == "shadowsocks" {
			return Invalid(".tls", "%s has no TLS", o.Type)
		}
		if x.TLS != nil {
			if x.TLS.CertificatePath != "" {
				return Invalid(".tls.certificate_path", "certificate_path is not supported: give the PEM inline in tls.certificate")
			}
			if x.TLS.Reality != nil && x.TLS.Reality.Enabled {
				return Invalid(".tls.reality", "reality is not supported")
			}
			if x.TLS.ECH != nil && x.TLS.ECH.Enabled {
				return Invalid(".tls.ech", "ech is not supported")
			}
			if len(x.TLS.Certificate) > 0 {
				o.CertificatePEM = []byte(strings.Join(x.TLS.Certificate, "\n"))
				if !x509.NewCertPool().AppendCertsFromPEM(o.CertificatePEM) {
					return Invalid(".tls.certificate", "no PEM certificate found")
				}
			}
		}
	}
	if o.Type == "vless" && o.Flow != "" {
		// sing-vmess's vision reads crypto/tls's unexported buffers through unsafe pointer
		// arithmetic (a checkptr fault under -race, memory corruption the day their layout
		// changes): not in this server process.
		return Invalid(".flow", "flow %s is not supported: use vless without flow", o.Flow)
	}
	return nil
}

// TLSEnabled reports whether the connection to the server is wrapped in TLS.
func (o *Outbound) TLSEnabled() bool { return o.TLS != nil && o.TLS.Enabled }

// ServerAddr is the proxy server as host:port.
func (o *Outbound) ServerAddr() string {
	return net.JoinHostPort(o.Server, strconv.Itoa(o.ServerPort))
}

// UDP reports whether the outbound carries UDP.
func (o *Outbound) UDP() bool {
	if o.Network == "tcp" {
		return false
	}
	switch o.Type {
	case "socks":
		return o.Version == "" || o.Version == "5"
	case "shadowsocks", "vmess", "vless", "trojan":
		return true
	}
	return false
}

// TCP reports whether the outbound carries TCP ("network": "udp" turns it off).
func (o *Outbound) TCP() bool { return o.Network != "udp" }

// SecretKey reports whether a proxy_config key holds a secret (password, uuid), masked
// in every answer. Keys match in any case, as they do when the config is decoded
// ("Password" is the password too).
func SecretKey(k string) bool {
	return strings.EqualFold(k, "password") || strings.EqualFold(k, "uuid")
}

// ParseAddr parses an IP address without a zone: a zone ("fe80::1%eth0") names a local
// interface, which means nothing for a remote peer, and may hold any character, even a
// newline that would end a line of a tunnel config.
func ParseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err == nil && a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("address %q has a zone", s)
	}
	return a, err
}

var hostnameRE = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$`)

// IsHost reports whether host may name a server: an IP address without a zone, or a DNS
// host name.
func IsHost(host string) bool {
	if _, err := ParseAddr(host); err == nil {
		return true
	}
	return host != "" && len(host) <= 253 && hostnameRE.MatchString(host)
}

func checkServer(field, host string) error {
	if host == "" {
		return errorf(field, "%s is required", field)
	}
	if !IsHost(host) {
		return errorf(field, "%s must be a host name or IP address", field)
	}
	return nil
}
