package control

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/x0tta6bl4/x0t/identity"
)

// Fingerprint is the SHA-256 of a certificate's DER encoding, in hex: what
// clients pin with --control-fingerprint.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// loadTLS returns the server certificate: the given files, or else the
// self-signed one in dir, generated on first start for the listen address
// and the extra names. A kept certificate is reused as it is (clients may
// have pinned it); a warning names any requested name it does not cover.
func loadTLS(log *slog.Logger, dir, listen string, sans []string, certFile, keyFile string) (*tls.Certificate, error) {
	if certFile != "" || keyFile != "" {
		if certFile == "" || keyFile == "" {
			return nil, errors.New("control: --tls-cert and --tls-key go together")
		}
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("control: TLS certificate: %w", err)
		}
		return &c, nil
	}
	certPath, keyPath := filepath.Join(dir, FileTLSCert), filepath.Join(dir, FileTLSKey)
	names := tlsNames(listen, sans)
	if c, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("control: %s: %w", certPath, err)
		}
		for _, n := range names {
			if leaf.VerifyHostname(n) != nil {
				log.Warn("the kept TLS certificate does not cover a requested name; remove it to generate a new one",
					"name", n, "cert", certPath)
			}
		}
		return &c, nil
	} else if _, statErr := os.Stat(certPath); !errors.Is(statErr, os.ErrNotExist) {
		return nil, fmt.Errorf("control: %s: %w", certPath, err)
	}
	certPEM, keyPEM, err := selfSigned(names, time.Now())
	if err != nil {
		return nil, err
	}
	if err := identity.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := identity.WriteFile(certPath, certPEM, 0o644); err != nil {
		return nil, err
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	log.Info("generated a self-signed TLS certificate", "cert", certPath, "names", names)
	return &c, nil
}

// tlsNames lists the names a self-signed certificate covers: the listen
// host, or for a wildcard listen address the host name and loopback, plus sans.
func tlsNames(listen string, sans []string) []string {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		host = listen
	}
	var names []string
	if a, err := netip.ParseAddr(host); host == "" || (err == nil && a.IsUnspecified()) {
		if h, err := os.Hostname(); err == nil && h != "" {
			names = append(names, h)
		}
		names = append(names, "localhost", "127.0.0.1", "::1")
	} else {
		names = append(names, host)
		if err == nil && a.IsLoopback() {
			names = append(names, "localhost")
		}
	}
	for _, s := range sans {
		if s != "" && !slices.Contains(names, s) {
			names = append(names, s)
		}
	}
	return names
}

// selfSigned makes an ECDSA P-256 certificate for names, valid ten years. It
// is its own CA (as httptest's is), so that it can be trusted directly
// through SSL_CERT_FILE by Go, curl and OpenSSL alike.
func selfSigned(names []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "x0t control plane", Organization: []string{"x0tta6bl4"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("control: self-signed certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}
