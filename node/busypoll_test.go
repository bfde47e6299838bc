package node

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/overlay"
	"github.com/x0tta6bl4/x0t/transport"
)

// TestBusyPollWindow: New refuses a negative window and one over
// config.MaxBusyPoll, and accepts the bounds.
func TestBusyPollWindow(t *testing.T) {
	now := time.Now()
	ca, caKey, trust := newTestCA(t, now)
	key, err := identity.GenerateNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := identity.IssueNode(ca, caKey, identity.NodeTemplate{Name: "n", Validity: time.Hour, Keys: key.PublicKeys(),
		Addrs: []netip.Prefix{netip.MustParsePrefix("100.64.0.1/10")}}, now.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := transport.ListenUDP(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, tc := range []struct {
		window time.Duration
		ok     bool
	}{{-time.Millisecond, false}, {time.Second + 1, false}, {0, true}, {time.Second, true}} {
		_, err := New(Config{Key: key, Cert: cert, Trust: trust, Conn: conn, BusyPoll: tc.window,
			Device: overlay.NewMemDevice(overlay.DefaultMTU, 1), Logger: slog.New(slog.DiscardHandler)})
		if tc.ok != (err == nil) || (err != nil && !strings.Contains(err.Error(), "busy-poll")) {
			t.Errorf("BusyPoll %v: New = %v", tc.window, err)
		}
	}
}

// newTestCA makes a CA valid for an hour from a minute before now, and a
// trust store holding it.
func newTestCA(tb testing.TB, now time.Time) (*identity.Certificate, *identity.SigningKey, *identity.Trust) {
	tb.Helper()
	ca, caKey, err := identity.NewCA("test", "", time.Hour, now.Add(-time.Minute))
	if err != nil {
		tb.Fatal(err)
	}
	trust, err := identity.NewTrust(ca, now)
	if err != nil {
		tb.Fatal(err)
	}
	return ca, caKey, trust
}
