package identity

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

type fixture struct {
	ca    *Certificate
	caKey *SigningKey
	node  *Certificate
	key   *NodeKey
}

func newFixture(t testing.TB, mesh string) fixture {
	t.Helper()
	ca, caKey, err := NewCA(mesh, "", 365*24*time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	key, err := GenerateNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	node, err := IssueNode(ca, caKey, NodeTemplate{
		Name:     "alpha",
		Addrs:    []netip.Prefix{netip.MustParsePrefix("100.64.0.5/10")},
		Tags:     []string{"web", "prod"},
		Validity: 30 * 24 * time.Hour,
		Keys:     key.PublicKeys(),
	}, t0)
	if err != nil {
		t.Fatal(err)
	}
	return fixture{ca, caKey, node, key}
}

func TestCertificateRoundTripAndVerify(t *testing.T) {
	f := newFixture(t, "prod")
	if err := f.ca.VerifySelfSigned(t0); err != nil {
		t.Fatalf("CA self-signature: %v", err)
	}
	parsed, err := ParseCertificatePEM(EncodePEM(PEMCertificate, f.node.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(parsed.body(), parsed.signedBody()) {
		t.Fatal("re-encoding a parsed certificate changed its body")
	}
	if err := parsed.Verify(f.ca, t0.Add(time.Hour)); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if got, want := parsed.SPIFFEID(), "spiffe://x0t.mesh/mesh/prod/node/alpha"; got != want {
		t.Errorf("SPIFFE ID %q, want %q", got, want)
	}
	if parsed.ID() != f.key.PublicKeys().ID() {
		t.Error("node ID of the certificate differs from the ID of its keys")
	}
	v6, ok := parsed.Addr(true)
	if !ok || v6.Bits() != 48 || !MeshULAPrefix(f.ca).Contains(v6.Addr()) {
		t.Errorf("derived IPv6 %v not inside mesh ULA %v", v6, MeshULAPrefix(f.ca))
	}
	if !strings.HasSuffix(v6.Addr().String(), "::6440:5") {
		t.Errorf("IPv6 %v does not embed 100.64.0.5", v6)
	}
	if !parsed.HasTag("prod") || parsed.HasTag("dev") {
		t.Error("tags not carried")
	}
}

func TestCertificateRejections(t *testing.T) {
	f := newFixture(t, "prod")
	other := newFixture(t, "prod") // same mesh name, different CA keys

	flip := func(off int) *Certificate {
		raw := bytes.Clone(f.node.Bytes())
		raw[off] ^= 0x01
		c, err := ParseCertificate(raw)
		if err != nil {
			t.Fatalf("flipped cert does not parse: %v", err)
		}
		return c
	}
	n := len(f.node.Bytes())
	tests := []struct {
		name string
		cert *Certificate
		ca   *Certificate
		now  time.Time
		want error
	}{
		{"another CA", f.node, other.ca, t0, ErrCertWrongIssuer},
		{"expired", f.node, f.ca, t0.Add(31 * 24 * time.Hour), ErrCertExpired},
		{"not yet valid", f.node, f.ca, t0.Add(-time.Hour), ErrCertNotYetValid},
		{"Ed25519 half broken", flip(n - SignatureSize + 3), f.ca, t0, ErrBadEd25519Signature},
		{"ML-DSA-65 half broken", flip(n - 100), f.ca, t0, ErrBadMLDSASignature},
		{"body tampered", flip(len(certMagic) + 4), f.ca, t0, ErrBadEd25519Signature},
		{"CA as node", f.ca, f.ca, t0, ErrCertNotNode},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cert.Verify(tc.ca, tc.now)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestTrust(t *testing.T) {
	f := newFixture(t, "prod")
	tr, err := NewTrust(f.ca, t0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // second pass is served from the signature cache
		if err := tr.Verify(f.node, t0); err != nil {
			t.Fatalf("pass %d: %v", i, err)
		}
	}
	if err := tr.Verify(f.node, t0.Add(31*24*time.Hour)); !errors.Is(err, ErrCertExpired) {
		t.Fatalf("cached cert past expiry: got %v", err)
	}
	tr.Revoke(f.node.ID())
	if err := tr.Verify(f.node, t0); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked: got %v", err)
	}
	other := newFixture(t, "prod")
	if err := tr.Verify(other.node, t0); !errors.Is(err, ErrCertWrongIssuer) {
		t.Fatalf("other CA: got %v", err)
	}
}

func TestHybridSignatureLabelsSeparate(t *testing.T) {
	k, err := GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("netmap v7")
	sig := k.Sign("x0t-netmap-v1", msg)
	if err := k.Public().Verify("x0t-netmap-v1", msg, sig); err != nil {
		t.Fatal(err)
	}
	if err := k.Public().Verify(labelCert, msg, sig); err == nil {
		t.Fatal("signature verified under another label")
	}
	if err := k.Public().Verify("x0t-netmap-v1", msg, sig[:len(sig)-1]); err == nil {
		t.Fatal("short signature verified")
	}
}

func TestKeyFilesRoundTrip(t *testing.T) {
	f := newFixture(t, "prod")
	b, _ := f.key.MarshalBinary()
	k2, err := ParseNodeKey(b)
	if err != nil {
		t.Fatal(err)
	}
	if k2.PublicKeys().ID() != f.key.PublicKeys().ID() {
		t.Fatal("node key changed in a round trip")
	}
	ca2, err := ParseCAKey(MarshalCAKey(f.caKey))
	if err != nil {
		t.Fatal(err)
	}
	if ca2.Public().Fingerprint() != f.caKey.Public().Fingerprint() {
		t.Fatal("CA key changed in a round trip")
	}
	if _, err := ParseNodeKey(MarshalCAKey(f.caKey)); err == nil {
		t.Fatal("CA key parsed as node key")
	}

	dir := t.TempDir()
	path := dir + "/sub/node.key"
	if err := WriteFile(path, EncodePEM(PEMNodeKey, b), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadNodeKey(path); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadCAKey(path); err == nil {
		t.Fatal("node key file read as a CA key")
	}
}

func TestIssueNodeValidation(t *testing.T) {
	f := newFixture(t, "prod")
	tmpl := NodeTemplate{Name: "Bad_Name", Validity: time.Hour, Keys: f.key.PublicKeys()}
	if _, err := IssueNode(f.ca, f.caKey, tmpl, t0); !errors.Is(err, ErrCertMalformed) {
		t.Fatalf("bad name: got %v", err)
	}
	other := newFixture(t, "prod")
	tmpl.Name = "ok"
	if _, err := IssueNode(f.ca, other.caKey, tmpl, t0); err == nil {
		t.Fatal("issued with a key that is not the CA's")
	}
	tmpl.Validity = 10 * 365 * 24 * time.Hour
	c, err := IssueNode(f.ca, f.caKey, tmpl, t0)
	if err != nil {
		t.Fatal(err)
	}
	if c.NotAfter.After(f.ca.NotAfter) {
		t.Fatal("node certificate outlives its CA")
	}
}

func FuzzParseCertificate(f *testing.F) {
	fx := newFixture(f, "prod")
	f.Add(fx.node.Bytes())
	f.Add(fx.ca.Bytes())
	f.Add([]byte("X0TC\x01\x02"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCertificate(b)
		if err != nil {
			return
		}
		// A certificate that parses re-encodes to the same bytes: one encoding per
		// certificate, so fingerprints can not be varied by re-encoding.
		if !bytes.Equal(append(c.body(), c.Signature...), b) {
			t.Fatal("parsed certificate does not re-encode to its input")
		}
		_ = c.Verify(fx.ca, t0)
	})
}

func FuzzParseKeys(f *testing.F) {
	fx := newFixture(f, "prod")
	nk, _ := fx.key.MarshalBinary()
	f.Add(EncodePEM(PEMNodeKey, nk))
	f.Add(EncodePEM(PEMCAKey, MarshalCAKey(fx.caKey)))
	f.Add(EncodePEM(PEMCertificate, fx.node.Bytes()))
	f.Fuzz(func(t *testing.T, data []byte) {
		if b, err := DecodePEM(PEMNodeKey, data); err == nil {
			_, _ = ParseNodeKey(b)
		}
		if b, err := DecodePEM(PEMCAKey, data); err == nil {
			_, _ = ParseCAKey(b)
		}
		_, _ = ParseCertificatePEM(data)
	})
}

func BenchmarkVerifyCertificate(b *testing.B) {
	f := newFixture(b, "prod")
	b.ReportAllocs()
	for b.Loop() {
		if err := f.node.Verify(f.ca, t0); err != nil {
			b.Fatal(err)
		}
	}
}
