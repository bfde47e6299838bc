package heal

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// candidate is a remedy Plan may choose.
type candidate struct {
	act   ActionType
	scope Scope
}

// Candidates lists the remedies for a symptom in their default order, the
// order used when Knowledge has no history: cheapest and least disruptive
// first, and the remedy that matches the root-cause guess before the others.
// Kinds with no remedy (no-path, overload, advert-flood) only alert.
func Candidates(s Symptom) []ActionType {
	cs := candidates(s)
	out := make([]ActionType, len(cs))
	for i, c := range cs {
		out[i] = c.act
	}
	return out
}

func candidates(s Symptom) []candidate {
	reroute := func(sc Scope) candidate { return candidate{ActReroute, sc} }
	sw := candidate{act: ActSwitchTransport}
	mtu := candidate{act: ActLowerMTU}
	switch s.Kind {
	case KindLinkDown, KindLinkRTT, KindLinkJitter, KindLinkLoss:
		cs := []candidate{reroute(AvoidLink), sw}
		if s.AltTransport {
			// The neighbour is fine over another transport: move there.
			cs = []candidate{sw, reroute(AvoidLink)}
		}
		if s.Kind == KindLinkLoss {
			// Loss of large packets only is a path-MTU black hole.
			cs = append(cs, mtu)
		}
		return cs
	case KindNodeDown:
		return []candidate{reroute(AvoidNode)}
	case KindNodeDegrade:
		return []candidate{reroute(AvoidNode), sw, mtu}
	case KindHandshake:
		// A fresh handshake is cheap; then the underlay (UDP blocked, large
		// post-quantum handshake fragments dropped); then route around.
		return []candidate{{act: ActRekey}, sw, mtu, reroute(AvoidNode)}
	case KindAuth:
		// Not attributable to the peer (anyone on the path can send bad tags
		// or replays): new keys first, quarantine if it goes on.
		return []candidate{{act: ActRekey}, {act: ActQuarantine}}
	case KindForgery:
		// Attributable: forged inside the peer's own session.
		return []candidate{{act: ActQuarantine}}
	case KindLocal:
		return []candidate{mtu}
	}
	return nil
}

// Plan is the P of MAPE-K: for each open incident it returns the next action,
// if any. It reads the incidents and the knowledge and changes neither; the
// returned actions have no ID yet (the Loop numbers and records them).
//
// Per incident, in order:
//   - a peer's symptom blamed on this node gets no action of its own (the
//     local incident acts);
//   - security incidents alert once when they open, and any incident alerts
//     when it becomes critical;
//   - while a remedy is in flight (no outcome yet, or applied and not yet
//     judged) or after one mitigated the incident, nothing more;
//   - otherwise the candidate remedies not in backoff are ranked by
//     Knowledge.Score for the incident's kind, ties in default order, and the
//     best is proposed;
//   - with no candidate left, one alert.
func Plan(cfg Config, open []*Incident, k *Knowledge, now time.Time) []Action {
	c := cfg.withDefaults()
	open = slices.Clone(open)
	slices.SortFunc(open, func(a, b *Incident) int { return cmp.Compare(a.ID, b.ID) })
	var out []Action
	for _, inc := range open {
		s, ok := inc.leading()
		if !ok || !inc.Open || !inc.clearedAt.IsZero() {
			continue // nothing to do, or symptoms gone and resolving
		}
		if s.Fault == FaultLocal && inc.Subject != "" {
			continue
		}
		alerted := inc.alerted != ""
		if (s.Kind.security() && !alerted) || (s.Severity == Critical && inc.alerted != Critical) {
			out = append(out, alert(inc, s, "opened"))
			alerted = true
		}
		if inc.current() != nil || inc.Mitigated {
			continue
		}
		cs := remedies(&c, inc, s, k, now)
		if len(cs) == 0 {
			if !alerted {
				out = append(out, alert(inc, s, "no remedy left"))
			}
			continue
		}
		best := cs[0]
		a := Action{
			Incident: inc.ID, Type: best.act, Kind: s.Kind, Peer: inc.Subject,
			Reason: fmt.Sprintf("%s: %s (%s)", s.Kind, best.act, k.explain(s.Kind, best.act, now)),
		}
		switch best.act {
		case ActReroute:
			a.Scope = best.scope
		case ActSwitchTransport:
			a.Transport = s.Transport
		case ActLowerMTU:
			a.MTU = c.LowMTU
		case ActQuarantine:
			a.Report = report(&c, inc, now)
		}
		out = append(out, a)
	}
	return out
}

// remedies returns the candidates for the incident that are not in backoff and
// not pointless, best first.
func remedies(c *Config, inc *Incident, s Symptom, k *Knowledge, now time.Time) []candidate {
	type ranked struct {
		candidate
		score float64
		prior int
	}
	var rs []ranked
	for i, cand := range candidates(s) {
		if _, blocked := k.Blocked(inc.Subject, cand.act, now); blocked {
			continue
		}
		if cand.act == ActLowerMTU && k.MTULowered(inc.Subject, now) {
			continue
		}
		rs = append(rs, ranked{cand, k.Score(s.Kind, cand.act, now), i})
	}
	slices.SortStableFunc(rs, func(a, b ranked) int {
		switch {
		case a.score > b.score:
			return -1
		case a.score < b.score:
			return 1
		}
		return a.prior - b.prior
	})
	out := make([]candidate, len(rs))
	for i, r := range rs {
		out[i] = r.candidate
	}
	return out
}

func alert(inc *Incident, s Symptom, why string) Action {
	return Action{Incident: inc.ID, Type: ActAlert, Kind: s.Kind, Peer: inc.Subject,
		Reason: fmt.Sprintf("%s (%s)", s.Reason, why)}
}

// report builds the misbehaviour report for a quarantine from the incident's
// counter evidence.
func report(c *Config, inc *Incident, now time.Time) *Report {
	r := &Report{Reporter: c.Self, Subject: inc.Subject, Incident: inc.ID, Since: inc.Started, At: now}
	for _, s := range inc.Symptoms {
		if !s.Kind.counterKind() {
			continue
		}
		if r.Kind == "" {
			r.Kind = s.Kind
		}
		r.Evidence = append(r.Evidence, s.Evidence...)
	}
	if r.Kind == "" {
		r.Kind = inc.Kind
	}
	return r
}
