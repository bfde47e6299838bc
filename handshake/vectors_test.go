package handshake

import (
	"bufio"
	"crypto/ecdh"
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/session"
	"github.com/x0tta6bl4/x0t/wire"
)

var updateVectors = flag.Bool("update-vectors", false, "regenerate testdata/vectors.json (then update docs/protocol.md by hand)")

const vectorsFile = "testdata/vectors.json"

// vectorFile is testdata/vectors.json: every input of one handshake and data
// packet, and every output, so another implementation can reproduce them.
type vectorFile struct {
	Comment         string `json:"comment"`
	Time            string `json:"time"`
	CACertificate   hexBytes
	InitiatorKey    hexBytes `json:"initiator_node_key"`
	InitiatorCert   hexBytes `json:"initiator_certificate"`
	ResponderKey    hexBytes `json:"responder_node_key"`
	ResponderCert   hexBytes `json:"responder_certificate"`
	InitiatorIndex  uint32   `json:"initiator_sender_index"`
	ResponderIndex  uint32   `json:"responder_sender_index"`
	Suite           uint8    `json:"suite"`
	InitEphX25519   hexBytes `json:"initiator_ephemeral_x25519_private"`
	InitEphMLKEM    hexBytes `json:"initiator_ephemeral_mlkem768_seed"`
	EncapsToRespS   hexBytes `json:"encaps_random_to_responder_static"`
	RespEphX25519   hexBytes `json:"responder_ephemeral_x25519_private"`
	EncapsToInitE   hexBytes `json:"encaps_random_to_initiator_ephemeral"`
	EncapsToInitS   hexBytes `json:"encaps_random_to_initiator_static"`
	Initiation      hexBytes `json:"initiation"`
	Response        hexBytes `json:"response"`
	KeyInitToResp   hexBytes `json:"transport_key_initiator_to_responder"`
	KeyRespToInit   hexBytes `json:"transport_key_responder_to_initiator"`
	DataCounter     uint64   `json:"data_counter"`
	DataPlaintext   hexBytes `json:"data_plaintext"`
	DataPacket      hexBytes `json:"data_packet_initiator_to_responder"`
	InitiationSHA   hexBytes `json:"initiation_sha256"`
	ResponseSHA     hexBytes `json:"response_sha256"`
	CACertSHA       hexBytes `json:"ca_certificate_sha256"`
	InitiatorIDHex  string   `json:"initiator_node_id"`
	ResponderIDHex  string   `json:"responder_node_id"`
	InitiatorCertFP hexBytes `json:"initiator_certificate_sha256"`
}

type hexBytes []byte

func (h hexBytes) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h)), nil }
func (h *hexBytes) UnmarshalText(b []byte) error {
	v, err := hex.DecodeString(string(b))
	*h = v
	return err
}

// fixedEntropy replays recorded random values in the order the handshake asks
// for them.
type fixedEntropy struct {
	x25519 [][]byte
	mlkem  [][]byte
	encaps [][]byte
}

func pop(q *[][]byte) ([]byte, error) {
	if len(*q) == 0 {
		return nil, errors.New("vector entropy exhausted")
	}
	v := (*q)[0]
	*q = (*q)[1:]
	return v, nil
}

func (f *fixedEntropy) X25519() (*ecdh.PrivateKey, error) {
	b, err := pop(&f.x25519)
	if err != nil {
		return nil, err
	}
	return ecdh.X25519().NewPrivateKey(b)
}

func (f *fixedEntropy) MLKEM() (*mlkem.DecapsulationKey768, error) {
	b, err := pop(&f.mlkem)
	if err != nil {
		return nil, err
	}
	return mlkem.NewDecapsulationKey768(b)
}

func (f *fixedEntropy) Encapsulate(ek *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
	b, err := pop(&f.encaps)
	if err != nil {
		return nil, nil, err
	}
	return mlkemtest.Encapsulate768(ek, b)
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// newVectors makes fresh inputs (used only with -update-vectors).
func newVectors(t *testing.T) *vectorFile {
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	ca, caKey, err := identity.NewCA("vectors", "", 10*365*24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(name, ip string) (hexBytes, hexBytes) {
		k, _ := identity.GenerateNodeKey()
		c, err := identity.IssueNode(ca, caKey, identity.NodeTemplate{Name: name,
			Addrs: []netip.Prefix{netip.MustParsePrefix(ip)}, Validity: 5 * 365 * 24 * time.Hour, Keys: k.PublicKeys()}, now)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := k.MarshalBinary()
		return kb, c.Bytes()
	}
	v := &vectorFile{
		Comment:        "x0t handshake v1 test vector: see docs/protocol.md. Keys are x0t node key encodings (identity/files.go).",
		Time:           now.Add(time.Hour).Format(time.RFC3339Nano),
		CACertificate:  ca.Bytes(),
		InitiatorIndex: 0x11223344, ResponderIndex: 0x55667788, Suite: wire.SuiteAES256GCM,
		InitEphX25519: randBytes(32), InitEphMLKEM: randBytes(64), EncapsToRespS: randBytes(32),
		RespEphX25519: randBytes(32), EncapsToInitE: randBytes(32), EncapsToInitS: randBytes(32),
		DataCounter:   0,
		DataPlaintext: hexBytes(mustHex("4500001c000000004001f90e644000016440000208004d5600010001")),
	}
	v.InitiatorKey, v.InitiatorCert = issue("initiator", "100.64.0.1/10")
	v.ResponderKey, v.ResponderCert = issue("responder", "100.64.0.2/10")
	return v
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// runVectors computes every output from the inputs of v.
func runVectors(t *testing.T, v *vectorFile) *vectorFile {
	t.Helper()
	now, err := time.Parse(time.RFC3339Nano, v.Time)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := identity.ParseCertificate(v.CACertificate)
	if err != nil {
		t.Fatal(err)
	}
	trust, err := identity.NewTrust(ca, now)
	if err != nil {
		t.Fatal(err)
	}
	side := func(keyB, certB []byte, e Entropy) (*Handshaker, *identity.Certificate) {
		k, err := identity.ParseNodeKey(keyB)
		if err != nil {
			t.Fatal(err)
		}
		c, err := identity.ParseCertificate(certB)
		if err != nil {
			t.Fatal(err)
		}
		hs, err := New(Config{Key: k, Cert: c, Trust: trust, Entropy: e, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		return hs, c
	}
	ihs, icert := side(v.InitiatorKey, v.InitiatorCert, &fixedEntropy{
		x25519: [][]byte{v.InitEphX25519}, mlkem: [][]byte{v.InitEphMLKEM}, encaps: [][]byte{v.EncapsToRespS}})
	rhs, rcert := side(v.ResponderKey, v.ResponderCert, &fixedEntropy{
		x25519: [][]byte{v.RespEphX25519}, encaps: [][]byte{v.EncapsToInitE, v.EncapsToInitS}})

	in, err := ihs.Initiate(rcert, v.InitiatorIndex, v.Suite)
	if err != nil {
		t.Fatal(err)
	}
	NewCookieGenerator(rcert.Keys.DH).AddMACs(in.Message, now)
	inc, err := rhs.Consume(in.Message)
	if err != nil {
		t.Fatal(err)
	}
	resp, rkeys, err := inc.Respond(v.ResponderIndex)
	if err != nil {
		t.Fatal(err)
	}
	NewCookieGenerator(icert.Keys.DH).AddMACs(resp, now)
	ikeys, err := in.Finish(resp)
	if err != nil {
		t.Fatal(err)
	}
	if ikeys.Send != rkeys.Recv || ikeys.Recv != rkeys.Send {
		t.Fatal("sides disagree on transport keys")
	}
	kp, err := session.NewKeypair(ikeys.Send, ikeys.Recv, ikeys.Suite, ikeys.LocalIndex, ikeys.RemoteIndex, true, now)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, wire.DataOverhead+len(v.DataPlaintext))
	copy(buf[wire.DataHeaderSize:], v.DataPlaintext)
	n, err := kp.Seal(buf, len(v.DataPlaintext), now)
	if err != nil {
		t.Fatal(err)
	}
	out := *v
	out.Initiation = in.Message
	out.Response = resp
	out.KeyInitToResp = ikeys.Send[:]
	out.KeyRespToInit = ikeys.Recv[:]
	out.DataPacket = buf[:n]
	is, rs, cs, fp := sha256.Sum256(in.Message), sha256.Sum256(resp), sha256.Sum256(v.CACertificate), sha256.Sum256(v.InitiatorCert)
	out.InitiationSHA, out.ResponseSHA, out.CACertSHA, out.InitiatorCertFP = is[:], rs[:], cs[:], fp[:]
	out.InitiatorIDHex = icert.ID().String()
	out.ResponderIDHex = rcert.ID().String()
	return &out
}

func loadVectors(t *testing.T) *vectorFile {
	t.Helper()
	data, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	var v vectorFile
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	return &v
}

// TestVectors recomputes the recorded handshake from its inputs and checks
// every byte of the outputs.
func TestVectors(t *testing.T) {
	if *updateVectors {
		v := runVectors(t, newVectors(t))
		data, _ := json.MarshalIndent(v, "", "  ")
		if err := os.WriteFile(vectorsFile, append(data, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s; now update the vectors block in docs/protocol.md", vectorsFile)
	}
	want := loadVectors(t)
	got := runVectors(t, want)
	check := func(name string, a, b []byte) {
		if hex.EncodeToString(a) != hex.EncodeToString(b) {
			t.Errorf("%s differs:\n got %x\nwant %x", name, a, b)
		}
	}
	check("initiation", got.Initiation, want.Initiation)
	check("response", got.Response, want.Response)
	check("key i->r", got.KeyInitToResp, want.KeyInitToResp)
	check("key r->i", got.KeyRespToInit, want.KeyRespToInit)
	check("data packet", got.DataPacket, want.DataPacket)
	check("initiation sha256", got.InitiationSHA, want.InitiationSHA)
	check("response sha256", got.ResponseSHA, want.ResponseSHA)
}

// TestProtocolDocVectors checks that the vectors printed in docs/protocol.md
// are the ones this implementation computes.
func TestProtocolDocVectors(t *testing.T) {
	v := runVectors(t, loadVectors(t))
	f, err := os.Open("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc := map[string]string{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "```vectors":
			in = true
		case in && line == "```":
			in = false
		case in && strings.Contains(line, "="):
			k, val, _ := strings.Cut(line, "=")
			doc[strings.TrimSpace(k)] += strings.TrimSpace(val)
		}
	}
	want := map[string]string{
		"time":                                 v.Time,
		"ca_certificate_sha256":                hex.EncodeToString(v.CACertSHA),
		"initiator_certificate_sha256":         hex.EncodeToString(v.InitiatorCertFP),
		"initiator_node_id":                    v.InitiatorIDHex,
		"responder_node_id":                    v.ResponderIDHex,
		"initiator_sender_index":               "0x11223344",
		"responder_sender_index":               "0x55667788",
		"initiator_ephemeral_x25519_private":   hex.EncodeToString(v.InitEphX25519),
		"initiator_ephemeral_mlkem768_seed":    hex.EncodeToString(v.InitEphMLKEM),
		"encaps_random_to_responder_static":    hex.EncodeToString(v.EncapsToRespS),
		"responder_ephemeral_x25519_private":   hex.EncodeToString(v.RespEphX25519),
		"encaps_random_to_initiator_ephemeral": hex.EncodeToString(v.EncapsToInitE),
		"encaps_random_to_initiator_static":    hex.EncodeToString(v.EncapsToInitS),
		"initiation_length":                    itoa(len(v.Initiation)),
		"initiation_sha256":                    hex.EncodeToString(v.InitiationSHA),
		"response_sha256":                      hex.EncodeToString(v.ResponseSHA),
		"transport_key_initiator_to_responder": hex.EncodeToString(v.KeyInitToResp),
		"transport_key_responder_to_initiator": hex.EncodeToString(v.KeyRespToInit),
		"data_plaintext":                       hex.EncodeToString(v.DataPlaintext),
		"data_packet_initiator_to_responder":   hex.EncodeToString(v.DataPacket),
	}
	for k, w := range want {
		if doc[k] != w {
			t.Errorf("docs/protocol.md vectors: %s = %q, implementation computes %q", k, doc[k], w)
		}
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
