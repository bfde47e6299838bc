package control

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/x0tta6bl4/x0t/control/apitypes"
	"github.com/x0tta6bl4/x0t/store"
)

func (s *Server) registerAudit(hapi huma.API) {
	register(s, hapi, opDef{ID: "list-audit", Method: http.MethodGet, Path: "/api/v1/audit", Tag: "Audit",
		Summary: "List the organization's audit log, newest first", Role: roleAdmin}, s.listAudit)
	register(s, hapi, opDef{ID: "verify-audit", Method: http.MethodGet, Path: "/api/v1/audit/verify", Tag: "Audit",
		Summary: "Verify the organization's hash chain and signed checkpoints; names the first broken entry",
		Role:    roleAdmin}, s.verifyAudit)
	register(s, hapi, opDef{ID: "list-checkpoints", Method: http.MethodGet, Path: "/api/v1/audit/checkpoints", Tag: "Audit",
		Summary: "List signed checkpoints of the organization's chain", Role: roleAdmin}, s.listCheckpoints)
	register(s, hapi, opDef{ID: "create-checkpoint", Method: http.MethodPost, Path: "/api/v1/audit/checkpoints", Tag: "Audit",
		Summary: "Sign a checkpoint of the chain now", Role: roleAdmin, Status: http.StatusCreated}, s.createCheckpoint)
	register(s, hapi, opDef{ID: "get-checkpoint-key", Method: http.MethodGet, Path: "/api/v1/audit/checkpoint-key", Tag: "Audit",
		Summary: "The control plane's checkpoint verifying key", Role: roleViewer}, s.checkpointKey)
}

// redacted are data fields never shown in the audit API: secrets' hashes
// and sealed CA keys. The chain still covers them.
var redacted = []string{"hash", "ca_key"}

// auditRecord presents an event's Before or After: the entity's data with
// secrets removed (its unique keys are internal and include hashes).
func auditRecord(b []byte) json.RawMessage {
	if b == nil {
		return nil
	}
	r, err := store.DecodeRecord(b)
	if err != nil {
		return json.RawMessage(`"(undecodable record)"`)
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(r.Data, &obj) != nil {
		return r.Data
	}
	for _, k := range redacted {
		if _, ok := obj[k]; ok {
			obj[k] = json.RawMessage(`"(redacted)"`)
		}
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return nil
	}
	return out
}

func auditEvent(e *store.Event) apitypes.AuditEvent {
	return apitypes.AuditEvent{Seq: e.OrgSeq, Time: e.Time, Actor: e.Actor, Action: e.Action, Kind: e.Kind, Target: e.ID,
		Before: auditRecord(e.Before), After: auditRecord(e.After), Prev: hex.EncodeToString(e.Prev), Hash: hex.EncodeToString(e.Hash)}
}

func (s *Server) listAudit(ctx context.Context, in *struct {
	Before uint64 `query:"before" doc:"Only entries before this position (the 'next' of the previous page)."`
	Limit  int    `query:"limit" minimum:"1" maximum:"1000" default:"100"`
	Kind   string `query:"kind" enum:"org,user,apikey,mesh,token,node,policy,revocation," doc:"Only entries about this kind of object."`
	Target string `query:"target" maxLength:"64" pattern:"^[a-z0-9_]*$" doc:"Only entries about this object ID (with kind)."`
}) (*body[apitypes.AuditPage], error) {
	p := principalFrom(ctx)
	if in.Target != "" && in.Kind == "" {
		return nil, invalid("query.target", "target needs kind")
	}
	evs, err := s.store.Events(ctx, store.EventQuery{Org: p.org.ID, Before: in.Before, Kind: in.Kind, ID: in.Target,
		Limit: in.Limit + 1, Desc: true})
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	out := apitypes.AuditPage{Events: []apitypes.AuditEvent{}}
	if len(evs) > in.Limit {
		evs = evs[:in.Limit]
		out.Next = evs[len(evs)-1].OrgSeq
	}
	for i := range evs {
		out.Events = append(out.Events, auditEvent(&evs[i]))
	}
	return &body[apitypes.AuditPage]{out}, nil
}

func (s *Server) verifyAudit(ctx context.Context, _ *struct{}) (*body[apitypes.AuditVerify], error) {
	p := principalFrom(ctx)
	rep, err := s.store.Verify(ctx, p.org.ID, store.KeyVerifier{Key: s.ckey.Public()})
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	out := apitypes.AuditVerify{OK: rep.OK, Events: rep.Events, Head: rep.Head, Checkpoints: rep.Checkpoints}
	if b := rep.Broken; b != nil {
		out.Broken = &apitypes.AuditBreak{Seq: b.OrgSeq, Action: b.Action, Reason: b.Reason}
		if b.Kind != "" {
			out.Broken.Target = b.Kind + "/" + b.ID
		}
		s.log.WarnContext(ctx, "audit chain does not verify", "org", p.org.ID, "entry", b.OrgSeq, "reason", b.Reason)
	}
	return &body[apitypes.AuditVerify]{out}, nil
}

func checkpointView(c *store.Checkpoint) apitypes.Checkpoint {
	return apitypes.Checkpoint{Seq: c.OrgSeq, Hash: hex.EncodeToString(c.Hash), Time: c.Time, KeyID: hex.EncodeToString(c.KeyID),
		Signature: base64.StdEncoding.EncodeToString(c.Signature)}
}

func (s *Server) listCheckpoints(ctx context.Context, in *struct {
	Limit int `query:"limit" minimum:"1" maximum:"1000" default:"100"`
}) (*body[apitypes.CheckpointList], error) {
	p := principalFrom(ctx)
	cps, err := s.store.Checkpoints(ctx, p.org.ID, in.Limit)
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	out := apitypes.CheckpointList{Items: []apitypes.Checkpoint{}}
	for i := range cps {
		out.Items = append(out.Items, checkpointView(&cps[i]))
	}
	return &body[apitypes.CheckpointList]{out}, nil
}

func (s *Server) createCheckpoint(ctx context.Context, _ *struct{}) (*body[apitypes.Checkpoint], error) {
	p := principalFrom(ctx)
	c, err := s.store.Checkpoint(ctx, p.org.ID, store.KeySigner{Key: s.ckey})
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	if c == nil {
		return nil, conflict("the audit log is empty")
	}
	return &body[apitypes.Checkpoint]{checkpointView(c)}, nil
}

func (s *Server) checkpointKey(ctx context.Context, _ *struct{}) (*body[apitypes.CheckpointKey], error) {
	pub := s.ckey.Public()
	fp := pub.Fingerprint()
	return &body[apitypes.CheckpointKey]{apitypes.CheckpointKey{KeyID: hex.EncodeToString(fp[:]), PublicKey: pub.Bytes()}}, nil
}
