package store

import (
	"encoding/json"
	"fmt"
)

// EncodeRecord encodes the part of an entity's state that events carry.
func EncodeRecord(e *Entity) ([]byte, error) {
	data := e.Data
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	b, err := json.Marshal(Record{Parent: e.Parent, Keys: e.Keys, Data: data})
	if err != nil {
		return nil, fmt.Errorf("store: encode %s/%s: %w", e.Kind, e.ID, err)
	}
	return b, nil
}

// DecodeRecord decodes an event's Before or After.
func DecodeRecord(b []byte) (*Record, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("store: decode record: %w", err)
	}
	return &r, nil
}

// EntityKey identifies an entity in a projection.
type EntityKey struct{ Kind, ID string }

// Projection is the state that a sequence of events leads to. Stores keep
// theirs in tables; this in-memory one rebuilds state from the log alone, to
// check the stored projection against it and to recover a lost one.
type Projection map[EntityKey]*Entity

// Apply applies one event, in Seq order.
func (p Projection) Apply(ev *Event) error {
	k := EntityKey{ev.Kind, ev.ID}
	if ev.After == nil {
		if _, ok := p[k]; !ok {
			return fmt.Errorf("store: event %d deletes %s/%s, which does not exist", ev.Seq, ev.Kind, ev.ID)
		}
		delete(p, k)
		return nil
	}
	r, err := DecodeRecord(ev.After)
	if err != nil {
		return fmt.Errorf("store: event %d: %w", ev.Seq, err)
	}
	e := &Entity{Kind: ev.Kind, ID: ev.ID, Org: ev.Org, Parent: r.Parent, Keys: r.Keys, Data: r.Data,
		Version: ev.Seq, Created: ev.Time, Updated: ev.Time}
	if old, ok := p[k]; ok {
		e.Created = old.Created
	}
	p[k] = e
	return nil
}
