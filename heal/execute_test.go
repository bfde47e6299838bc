package heal

import (
	"errors"
	"testing"
)

func TestExecute(t *testing.T) {
	boom := errors.New("boom")
	rep := &Report{Subject: "g"}
	about := &Incident{Subject: "g", Kind: KindAuth}
	tests := []struct {
		a    Action
		call string
		fail ActionType
	}{
		{Action{Type: ActReroute, Peer: "b", Scope: AvoidLink}, "reroute b link", ""},
		{Action{Type: ActReroute, Peer: "b", Scope: AvoidNode}, "reroute b node", ActReroute},
		{Action{Type: ActRestore, Peer: "b", Scope: AvoidNode}, "restore b node", ""},
		{Action{Type: ActRekey, Peer: "g"}, "rekey g", ActRekey},
		{Action{Type: ActSwitchTransport, Peer: "g", Transport: "udp"}, "switch-transport g", ""},
		{Action{Type: ActLowerMTU, MTU: 1280}, "lower-mtu  1280", ""},
		{Action{Type: ActQuarantine, Peer: "g", Report: rep}, "quarantine g", ActQuarantine},
		{Action{Type: ActAlert, About: about}, "alert g auth-failures", ""},
	}
	for _, tt := range tests {
		t.Run(tt.call, func(t *testing.T) {
			ex := &fakeExec{fail: map[ActionType]error{}}
			if tt.fail != "" {
				ex.fail[tt.fail] = boom
			}
			err := Execute(ex, tt.a)
			if len(ex.calls) != 1 || ex.calls[0] != tt.call {
				t.Fatalf("calls = %q, want %q", ex.calls, tt.call)
			}
			if (tt.fail != "") != errors.Is(err, boom) {
				t.Fatalf("err = %v", err)
			}
		})
	}
	if err := Execute(&fakeExec{}, Action{Type: "teleport"}); !errors.Is(err, ErrUnknownAction) {
		t.Fatalf("unknown action: err = %v", err)
	}
	ex := &fakeExec{}
	if err := Execute(ex, Action{Type: ActQuarantine, Peer: "g"}); err != nil || len(ex.quar) != 1 {
		t.Fatal("quarantine without a report")
	}
}
