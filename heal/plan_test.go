package heal

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func sym(subject string, k Kind, f Fault, sev State) Symptom {
	return Symptom{Kind: k, Subject: subject, Fault: f, Severity: sev, Reason: string(k) + " on " + subject,
		Evidence: []Evidence{{Metric: "x", Value: 1}}}
}

func openInc(id uint64, ss ...Symptom) *Incident {
	return &Incident{ID: id, Subject: ss[0].Subject, Kind: ss[0].Kind, Open: true, Started: t0, Symptoms: ss}
}

func TestPlan(t *testing.T) {
	now := at(100)
	linkLoss := sym("b", KindLinkLoss, FaultLink, Degraded)
	alt := linkLoss
	alt.AltTransport, alt.Transport = true, "udp"
	learn := func(kind Kind, a ActionType, worked bool, n int, when time.Time) func(*Knowledge) {
		return func(k *Knowledge) {
			for range n {
				k.Learn(kind, a, worked, when)
			}
		}
	}
	tests := []struct {
		name  string
		inc   *Incident
		setup func(*Knowledge)
		want  []string // "type peer scope/transport/mtu"
	}{
		{"link loss: reroute around the link", openInc(1, linkLoss), nil, []string{"reroute b link"}},
		{"healthy other transport: switch first", openInc(1, alt), nil, []string{"switch-transport b udp"}},
		{"reroute failed for link loss before: switch instead",
			openInc(1, linkLoss), learn(KindLinkLoss, ActReroute, false, 1, now), []string{"switch-transport b"}},
		{"reroute in backoff for this subject",
			openInc(1, linkLoss), func(k *Knowledge) { k.failed("b", ActReroute, at(90)) }, []string{"switch-transport b"}},
		{"backoff of another subject does not matter",
			openInc(1, linkLoss), func(k *Knowledge) { k.failed("g", ActReroute, at(90)) }, []string{"reroute b link"}},
		{"backoff over: allowed again",
			openInc(1, linkLoss), func(k *Knowledge) { k.failed("b", ActReroute, at(60)) }, []string{"reroute b link"}},
		{"everything tried: alert once",
			openInc(1, linkLoss), func(k *Knowledge) {
				k.failed("b", ActReroute, now)
				k.failed("b", ActSwitchTransport, now)
				k.markLowered("b", now)
			}, []string{"alert b"}},
		{"dead neighbour: route around the node", openInc(1, sym("b", KindNodeDown, FaultNode, Degraded)), nil, []string{"reroute b node"}},
		{"failing handshakes: rekey", openInc(1, sym("b", KindHandshake, FaultNode, Degraded)), nil, []string{"rekey b"}},
		{"auth failures: alert and rekey", openInc(1, sym("b", KindAuth, FaultNode, Degraded)), nil, []string{"alert b", "rekey b"}},
		{"forgery: alert and quarantine", openInc(1, sym("b", KindForgery, FaultNode, Degraded)), nil, []string{"alert b", "quarantine b"}},
		{"quarantine worked for auth failures: prefer it",
			openInc(1, sym("b", KindAuth, FaultNode, Degraded)),
			func(k *Knowledge) {
				learn(KindAuth, ActQuarantine, true, 2, at(50))(k)
				learn(KindAuth, ActRekey, false, 1, at(50))(k)
			}, []string{"alert b", "quarantine b"}},
		{"old lessons fade: a failure 10 half-lives ago barely counts",
			openInc(1, linkLoss), learn(KindLinkLoss, ActReroute, false, 1, now.Add(-240*time.Hour)), []string{"switch-transport b"}},
		{"lessons are per kind",
			openInc(1, linkLoss), learn(KindLinkRTT, ActReroute, false, 3, now), []string{"reroute b link"}},
		{"local problem: alert and lower every MTU", openInc(1, sym("", KindLocal, FaultLocal, Critical)), nil, []string{"alert ", "lower-mtu  1280"}},
		{"no path: only an alert", openInc(1, sym("", KindNoPath, FaultLocal, Degraded)), nil, []string{"alert "}},
		{"overload: only an alert", openInc(1, sym("", KindOverload, FaultLocal, Degraded)), nil, []string{"alert "}},
		{"advert flood: one alert", openInc(1, sym("b", KindFlood, FaultNode, Degraded)), nil, []string{"alert b"}},
		{"peer symptom blamed on this node: the local incident acts", openInc(1, sym("b", KindLinkLoss, FaultLocal, Degraded)), nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := NewKnowledge(Config{})
			if tt.setup != nil {
				tt.setup(k)
			}
			acts := Plan(Config{Self: "self"}, []*Incident{tt.inc}, k, now)
			var got []string
			for _, a := range acts {
				s := string(a.Type) + " " + a.Peer
				switch a.Type {
				case ActReroute:
					s += " " + string(a.Scope)
				case ActSwitchTransport:
					s = strings.TrimSpace(s + " " + a.Transport)
				case ActLowerMTU:
					s += " " + strconv.Itoa(a.MTU)
				}
				got = append(got, s)
				if a.Incident != tt.inc.ID || a.ID != 0 || a.Reason == "" {
					t.Errorf("action %+v: want incident %d, no ID, a reason", a, tt.inc.ID)
				}
			}
			if strings.Join(got, ", ") != strings.Join(tt.want, ", ") {
				t.Fatalf("Plan = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestPlanWaits checks the cases where Plan must not act.
func TestPlanWaits(t *testing.T) {
	now := at(100)
	k := NewKnowledge(Config{})
	tests := []struct {
		name string
		mod  func(*Incident)
	}{
		{"remedy awaiting its outcome", func(i *Incident) {
			i.Actions = []ActionRecord{{Action: Action{Type: ActReroute}, Result: ResPending}}
		}},
		{"remedy applied, not judged yet", func(i *Incident) {
			i.Actions = []ActionRecord{{Action: Action{Type: ActReroute}, Result: ResApplied}}
		}},
		{"mitigated", func(i *Incident) { i.Mitigated = true }},
		{"symptoms gone, resolving", func(i *Incident) { i.clearedAt = at(99) }},
		{"closed", func(i *Incident) { i.Open = false }},
		{"no symptoms", func(i *Incident) { i.Symptoms = nil }},
		{"already alerted and nothing to do", func(i *Incident) {
			i.Symptoms = []Symptom{sym("", KindNoPath, FaultLocal, Critical)}
			i.alerted = Critical
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inc := openInc(1, sym("b", KindLinkLoss, FaultLink, Degraded))
			tt.mod(inc)
			if acts := Plan(Config{}, []*Incident{inc}, k, now); len(acts) != 0 {
				t.Fatalf("Plan = %+v, want nothing", acts)
			}
		})
	}
	// A failed remedy in the history does not block the next one.
	inc := openInc(1, sym("b", KindLinkLoss, FaultLink, Degraded))
	inc.Actions = []ActionRecord{{Action: Action{Type: ActReroute}, Result: ResFailed}, {Action: Action{Type: ActAlert}, Result: ResDone}}
	k.failed("b", ActReroute, at(95))
	if acts := Plan(Config{}, []*Incident{inc}, k, now); len(acts) != 1 || acts[0].Type != ActSwitchTransport {
		t.Fatalf("after a failed reroute Plan = %+v, want switch-transport", acts)
	}
}

func TestPlanQuarantineReport(t *testing.T) {
	s := sym("g", KindForgery, FaultNode, Degraded)
	s.Evidence = []Evidence{{Metric: "forged_adverts", Value: 4}}
	link := sym("g", KindNodeDegrade, FaultNode, Degraded)
	inc := openInc(7, s, link)
	acts := Plan(Config{Self: "me"}, []*Incident{inc}, NewKnowledge(Config{}), at(30))
	if len(acts) != 2 || acts[1].Type != ActQuarantine {
		t.Fatalf("Plan = %+v", acts)
	}
	r := acts[1].Report
	want := Report{Reporter: "me", Subject: "g", Kind: KindForgery, Incident: 7, Since: t0, At: at(30), Evidence: s.Evidence}
	if r == nil || r.Reporter != want.Reporter || r.Subject != want.Subject || r.Kind != want.Kind || r.Incident != 7 ||
		!r.Since.Equal(t0) || !r.At.Equal(at(30)) || len(r.Evidence) != 1 || r.Evidence[0] != want.Evidence[0] {
		t.Fatalf("report = %+v, want %+v", r, want)
	}
}

func TestCandidates(t *testing.T) {
	for _, k := range kindOrder {
		cs := Candidates(Symptom{Kind: k})
		seen := map[ActionType]bool{}
		for _, c := range cs {
			if !c.remedy() || seen[c] {
				t.Errorf("%s: candidate %q is not a remedy or repeats", k, c)
			}
			seen[c] = true
		}
	}
	if got := Candidates(Symptom{Kind: KindLinkLoss, AltTransport: true}); got[0] != ActSwitchTransport {
		t.Errorf("with a healthy alternative transport the first candidate is %q", got[0])
	}
}
