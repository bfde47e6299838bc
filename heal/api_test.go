package heal_test

import (
	"testing"

	"github.com/x0tta6bl4/x0t/api"
	"github.com/x0tta6bl4/x0t/heal"
)

// TestBriefMatchesHeartbeat keeps IncidentBrief convertible to the heartbeat's
// api.IncidentReport, and the health states equal to the heartbeat's strings.
func TestBriefMatchesHeartbeat(t *testing.T) {
	r := api.IncidentReport(heal.Incident{Subject: "b", Kind: heal.KindLinkLoss, Open: true}.Brief())
	if r.Subject != "b" || r.Kind != "link-loss" || r.Resolved {
		t.Fatalf("converted = %+v", r)
	}
	hb := api.Heartbeat{Health: string(heal.Degraded)}
	if hb.Health != "degraded" || heal.Healthy != "healthy" || heal.Critical != "critical" {
		t.Fatal("health state strings drifted from the heartbeat's")
	}
}
