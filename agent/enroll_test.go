package agent

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/api"
	"github.com/x0tta6bl4/x0t/identity"
)

// pendingCP keeps the node pending for a few polls, then approves it (or
// revokes it, or never decides).
type pendingCP struct {
	fakeCP
	polls   atomic.Int64
	approve int64 // approve at this poll (0: never)
	revoke  bool
}

func (p *pendingCP) Enroll(ctx context.Context, req *api.EnrollRequest) (*api.NodeResponse, error) {
	resp, err := p.fakeCP.Enroll(ctx, req)
	if err != nil {
		return nil, err
	}
	resp.Status, resp.Cert = api.StatusPending, nil
	return resp, nil
}

func (p *pendingCP) Status(ctx context.Context) (*api.NodeResponse, error) {
	n := p.polls.Add(1)
	resp, _ := p.fakeCP.Status(ctx)
	switch {
	case p.revoke:
		resp.Status, resp.Cert = api.StatusRevoked, nil
	case p.approve == 0 || n < p.approve:
		resp.Status, resp.Cert = api.StatusPending, nil
	}
	return resp, nil
}

// The wait for approval is reported once through Options.Progress and its end
// once, with how it ended: approved, revoked or given up.
func TestEnrollReportsApprovalWait(t *testing.T) {
	ca, caKey, err := identity.NewCA("mesh", "", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		cp      *pendingCP
		timeout time.Duration
		want    error
	}{
		{"approved", &pendingCP{approve: 3}, time.Minute, nil},
		{"revoked", &pendingCP{revoke: true}, time.Minute, ErrRevoked},
		{"given up", &pendingCP{}, 100 * time.Millisecond, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cp.ca, tc.cp.caKey = ca, caKey
			st, err := NewState(t.TempDir(), "https://cp.example", "", "alpha")
			if err != nil {
				t.Fatal(err)
			}
			var started, ended int
			var what string
			var endErr error
			opt := Options{Token: "tok", PollInterval: 5 * time.Millisecond,
				Progress: func(w string) func(error) {
					started++
					what = w
					return func(err error) { ended++; endErr = err }
				}}
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			err = Enroll(ctx, tc.cp, st, opt)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Enroll: %v, want %v", err, tc.want)
			}
			if started != 1 || ended != 1 || !errors.Is(endErr, tc.want) {
				t.Fatalf("progress started %d, ended %d with %v", started, ended, endErr)
			}
			if !strings.Contains(what, "alpha") || !strings.Contains(what, st.NodeID[:8]) {
				t.Errorf("progress says %q", what)
			}
		})
	}
}
