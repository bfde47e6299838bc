package heal

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"
)

func TestScore(t *testing.T) {
	day := 24 * time.Hour
	type lesson struct {
		worked bool
		when   time.Time
	}
	tests := []struct {
		name    string
		lessons []lesson
		now     time.Time
		want    float64
	}{
		{"untried", nil, t0, 0.5},
		{"one success", []lesson{{true, t0}}, t0, 2.0 / 3},
		{"one failure", []lesson{{false, t0}}, t0, 1.0 / 3},
		{"two successes, one failure", []lesson{{true, t0}, {true, t0}, {false, t0}}, t0, 3.0 / 5},
		{"a success one half-life ago counts half", []lesson{{true, t0}}, t0.Add(day), 1.5 / 2.5},
		{"decay applies before a new lesson", []lesson{{false, t0}, {true, t0.Add(day)}}, t0.Add(day), 2.0 / 3.5},
		{"ancient history is forgotten", []lesson{{false, t0}}, t0.Add(30 * day), 0.5},
		{"a lesson from the future does not decay", []lesson{{true, t0.Add(time.Hour)}}, t0, 2.0 / 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := NewKnowledge(Config{})
			for _, l := range tt.lessons {
				k.Learn(KindLinkLoss, ActReroute, l.worked, l.when)
			}
			if got := k.Score(KindLinkLoss, ActReroute, tt.now); math.Abs(got-tt.want) > 1e-6 {
				t.Errorf("Score = %.6f, want %.6f", got, tt.want)
			}
		})
	}
}

func TestLearnIgnoresBookkeeping(t *testing.T) {
	k := NewKnowledge(Config{})
	k.Learn(KindAuth, ActAlert, true, t0)
	k.Learn(KindAuth, ActRestore, true, t0)
	if len(k.Scores(t0)) != 0 {
		t.Fatalf("alerts or restores were scored: %+v", k.Scores(t0))
	}
}

func TestBackoff(t *testing.T) {
	k := NewKnowledge(Config{BackoffBase: 30 * time.Second, BackoffMax: 5 * time.Minute})
	want := []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 5 * time.Minute, 5 * time.Minute}
	for i, d := range want {
		k.failed("b", ActReroute, t0)
		until, blocked := k.Blocked("b", ActReroute, t0)
		if !blocked || until.Sub(t0) != d {
			t.Fatalf("after failure %d: blocked=%v for %v, want %v", i+1, blocked, until.Sub(t0), d)
		}
		if _, b := k.Blocked("b", ActReroute, t0.Add(d)); b {
			t.Fatalf("still blocked when the backoff ends")
		}
	}
	if _, b := k.Blocked("b", ActRekey, t0); b {
		t.Fatal("backoff leaked to another action")
	}
	if _, b := k.Blocked("g", ActReroute, t0); b {
		t.Fatal("backoff leaked to another subject")
	}
	k.succeeded("b", ActReroute)
	if _, b := k.Blocked("b", ActReroute, t0); b {
		t.Fatal("success did not clear the backoff")
	}
	// After a long quiet spell the failure count starts afresh.
	k.failed("b", ActReroute, t0)
	k.failed("b", ActReroute, t0)
	k.prune(t0.Add(time.Hour))
	k.failed("b", ActReroute, t0.Add(time.Hour))
	if until, _ := k.Blocked("b", ActReroute, t0.Add(time.Hour)); until.Sub(t0.Add(time.Hour)) != 30*time.Second {
		t.Fatalf("backoff after a quiet hour = %v, want the base 30s", until.Sub(t0.Add(time.Hour)))
	}
}

func TestMTULowered(t *testing.T) {
	k := NewKnowledge(Config{HalfLife: time.Hour})
	k.markLowered("b", t0)
	if !k.MTULowered("b", t0.Add(time.Minute)) || k.MTULowered("g", t0) || k.MTULowered("", t0) {
		t.Fatal("MTULowered wrong")
	}
	k.prune(t0.Add(2 * time.Hour))
	if k.MTULowered("b", t0.Add(2*time.Hour)) {
		t.Fatal("lowered MTU remembered past HalfLife")
	}
}

func TestIncidentLog(t *testing.T) {
	k := NewKnowledge(Config{MaxIncidents: 3})
	for i := range 5 {
		inc := k.openIncident(string(rune('a'+i)), at(float64(i)))
		inc.Symptoms = []Symptom{{Kind: KindLinkLoss, Evidence: []Evidence{{Metric: "loss", Value: 0.3}}}}
		if i < 4 {
			k.close(inc)
		}
	}
	got := k.Incidents(0)
	if len(got) != 4 {
		t.Fatalf("%d incidents kept, want 1 open + 3 closed", len(got))
	}
	for i, want := range []uint64{5, 4, 3, 2} {
		if got[i].ID != want {
			t.Fatalf("incident %d has ID %d, want %d (newest first)", i, got[i].ID, want)
		}
	}
	if !got[0].Open || got[1].Open {
		t.Fatal("open flags wrong")
	}
	if l := k.Incidents(2); len(l) != 2 || l[0].ID != 5 {
		t.Fatalf("limit 2 gave %d incidents", len(l))
	}
	// Copies: changing them does not change the log.
	got[0].Symptoms[0].Evidence[0].Value = 99
	if k.Incidents(1)[0].Symptoms[0].Evidence[0].Value != 0.3 {
		t.Fatal("Incidents returned shared memory")
	}
}

func TestReportSigningBytes(t *testing.T) {
	r := Report{Reporter: "me", Subject: "g", Kind: KindForgery, Incident: 3,
		Since: t0.In(time.FixedZone("X", 3600)), At: at(5), Evidence: []Evidence{{Metric: "forged_adverts", Value: 3}}}
	b := r.SigningBytes()
	if !bytes.HasPrefix(b, []byte(ReportLabel+"\n")) {
		t.Fatalf("no label: %q", b)
	}
	if !bytes.Equal(b, r.SigningBytes()) {
		t.Fatal("not deterministic")
	}
	r2 := r
	r2.Since = t0 // same instant, UTC
	if !bytes.Equal(b, r2.SigningBytes()) {
		t.Fatal("the time zone changes the signed bytes")
	}
	var back Report
	if err := json.Unmarshal(b[len(ReportLabel)+1:], &back); err != nil || back.Subject != "g" {
		t.Fatalf("payload does not decode: %v", err)
	}
}

func TestBrief(t *testing.T) {
	inc := Incident{Started: t0, Kind: KindLinkLoss, Subject: "b", Open: false,
		Actions: []ActionRecord{{Action: Action{Type: ActReroute}}, {Action: Action{Type: ActRestore}}}}
	if b := inc.Brief(); b.Action != "restore" || !b.Resolved || b.Kind != "link-loss" || !b.Time.Equal(t0) {
		t.Fatalf("Brief = %+v", b)
	}
	inc.Worked = ActReroute
	if b := inc.Brief(); b.Action != "reroute" {
		t.Fatalf("Brief names %q, want the remedy that worked", b.Action)
	}
}
