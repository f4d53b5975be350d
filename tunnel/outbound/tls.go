package outbound

import (
	"crypto/tls"
	"crypto/x509"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/egressconf"
)

// clientTLS is the TLS configuration toward the server of c, or nil without TLS.
func clientTLS(c *egressconf.Outbound) *tls.Config {
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
