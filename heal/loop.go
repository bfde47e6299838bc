package heal

import (
	"maps"
	"slices"
	"sync"
	"time"
)

// maxErrorLen bounds an outcome's error text kept in the log.
const maxErrorLen = 256

// Loop is one node's MAPE-K loop. Observe feeds it, Step runs one
// Monitor-Analyze-Plan pass and returns the actions to execute, Outcome
// reports how each went. Its methods are safe for concurrent use (the node's
// local API may read Health while its control loop steps), but the loop never
// calls out while holding its lock, and it starts no goroutine.
type Loop struct {
	mu      sync.Mutex
	cfg     Config
	mon     *Monitor
	k       *Knowledge
	lastAct uint64
	issued  map[uint64]*Incident // actions awaiting an outcome, by ID
	syms    []Symptom            // the last Analyze result
	health  Health
	now     time.Time // time of the last Step
	stepped bool
}

// New returns a loop with no history. Zero Config fields take their defaults.
func New(cfg Config) *Loop {
	c := cfg.withDefaults()
	return &Loop{
		cfg:    c,
		mon:    NewMonitor(c),
		k:      NewKnowledge(c),
		issued: make(map[uint64]*Incident),
		health: Health{State: Healthy},
	}
}

// Observe feeds one observation to the monitor.
func (l *Loop) Observe(o Observation) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mon.Observe(o)
}

// Step runs one pass at time now: forget stale monitoring state, Analyze,
// update the incidents (open, resolve, credit), judge applied actions, Plan,
// and update the health state. It returns the actions to execute, in order:
// restores of reroutes whose incidents ended, then one action per incident
// at most (plus alerts).
func (l *Loop) Step(now time.Time) []Action {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.now = now
	gone := l.mon.Prune(now)
	syms := Analyze(l.mon, now)
	l.syms = syms

	out := l.track(syms, gone, now)
	l.expire(now)
	l.judge(now)
	open := l.k.Open()
	byID := make(map[uint64]*Incident, len(open))
	for _, inc := range open {
		byID[inc.ID] = inc
	}
	for _, a := range Plan(l.cfg, open, l.k, now) {
		if inc := byID[a.Incident]; inc != nil {
			out = append(out, l.issue(inc, a, now))
		}
	}
	l.k.prune(now)

	state, reasons := Assess(syms, l.cfg.MaxReasons)
	if !l.stepped || state != l.health.State {
		l.health.Since = now
	}
	l.health.State, l.health.Reasons = state, reasons
	l.stepped = true
	return out
}

// track opens, updates and resolves incidents from this pass's symptoms.
func (l *Loop) track(syms []Symptom, gone []string, now time.Time) []Action {
	bySubject := map[string][]Symptom{}
	for _, s := range syms {
		bySubject[s.Subject] = append(bySubject[s.Subject], s)
	}
	for _, subject := range slices.Sorted(maps.Keys(bySubject)) {
		ss := bySubject[subject]
		inc := l.k.open[subject]
		if inc == nil {
			inc = l.k.openIncident(subject, now)
		}
		prevKind, prevFault := inc.Kind, inc.Fault
		inc.Symptoms = cloneSymptoms(ss)
		inc.Kind, inc.Fault = ss[0].Kind, ss[0].Fault
		for _, s := range ss {
			if s.Severity.worse(inc.Severity) {
				inc.Severity = s.Severity
			}
		}
		if !slices.Contains(inc.Kinds, inc.Kind) && len(inc.Kinds) < len(kindOrder)+1 {
			inc.Kinds = append(inc.Kinds, inc.Kind)
		}
		if prevKind != "" && (prevKind.family() != inc.Kind.family() || prevFault != inc.Fault) {
			// A different problem (not just loss turning into a dead
			// link): plan again, and alert again if it warrants one.
			inc.Mitigated = false
			inc.alerted = ""
		}
		inc.LastSeen = later(inc.LastSeen, now)
		inc.clearedAt = time.Time{}
	}

	var out []Action
	for _, inc := range l.k.Open() {
		if _, active := bySubject[inc.Subject]; active {
			continue
		}
		if inc.Subject != "" && slices.Contains(gone, inc.Subject) {
			out = append(out, l.end(inc, now, false, "no longer monitored")...)
			continue
		}
		if inc.clearedAt.IsZero() {
			inc.clearedAt = now
		}
		if now.Sub(inc.clearedAt) >= l.cfg.ResolveHold && !l.pending(inc) {
			out = append(out, l.end(inc, inc.clearedAt, true, "")...)
		}
	}
	return out
}

// pending reports whether a remedy of the incident still awaits its outcome;
// the incident does not resolve before, so the outcome has an incident to
// land in and a reroute can be restored.
func (l *Loop) pending(inc *Incident) bool {
	r := inc.current()
	return r != nil && r.Result == ResPending
}

// end closes an incident at time at. A recovery credits the applied remedy
// (recovered); any other end leaves it inconclusive. Reroutes carried out for
// the incident are restored.
func (l *Loop) end(inc *Incident, at time.Time, recovered bool, note string) []Action {
	if r := inc.current(); r != nil && r.Result == ResApplied {
		if recovered {
			l.credit(inc, r, l.now)
		} else {
			r.Result, r.Judged = ResInconclusive, l.now
		}
	}
	inc.Resolved, inc.Note = at, note
	l.k.close(inc)

	var out []Action
	restored := map[Scope]bool{}
	for _, r := range inc.Actions {
		a := r.Action
		if a.Type != ActReroute || restored[a.Scope] || r.Applied.IsZero() || r.Result == ResError || r.Result == ResTimeout {
			continue
		}
		restored[a.Scope] = true
		out = append(out, l.issue(inc, Action{
			Incident: inc.ID, Type: ActRestore, Kind: a.Kind, Peer: a.Peer, Scope: a.Scope,
			Reason: "incident over: lift the reroute",
		}, l.now))
	}
	return out
}

// credit marks a remedy as having worked.
func (l *Loop) credit(inc *Incident, r *ActionRecord, now time.Time) {
	r.Result, r.Judged = ResWorked, now
	inc.Worked = r.Action.Type
	l.k.Learn(r.Action.Kind, r.Action.Type, true, now)
	l.k.succeeded(inc.Subject, r.Action.Type)
}

// blame marks a remedy as not having worked and backs it off.
func (l *Loop) blame(inc *Incident, r *ActionRecord, res Result, now time.Time) {
	r.Result, r.Judged = res, now
	if res != ResTimeout { // a lost outcome says nothing about the remedy
		l.k.Learn(r.Action.Kind, r.Action.Type, false, now)
	}
	l.k.failed(inc.Subject, r.Action.Type, now)
}

// expire times out actions whose outcome never came.
func (l *Loop) expire(now time.Time) {
	for _, id := range slices.Sorted(maps.Keys(l.issued)) {
		inc := l.issued[id]
		r := inc.record(id)
		if r == nil {
			delete(l.issued, id)
			continue
		}
		if now.Sub(r.Issued) < l.cfg.OutcomeTimeout {
			continue
		}
		delete(l.issued, id)
		if r.Result == ResPending {
			if inc.Open {
				l.blame(inc, r, ResTimeout, now)
			} else {
				r.Result, r.Judged = ResTimeout, now
			}
		}
	}
}

// judge decides, VerifyAfter after a remedy was applied, whether it worked.
// A remedy whose symptoms cleared earlier is credited when the incident
// resolves (track), so judge only deals with incidents still showing
// symptoms.
func (l *Loop) judge(now time.Time) {
	for _, inc := range l.k.Open() {
		r := inc.current()
		if r == nil || r.Result != ResApplied || !inc.clearedAt.IsZero() || now.Sub(r.Applied) < l.cfg.VerifyAfter {
			continue
		}
		s, _ := inc.leading()
		switch {
		case s.Fault == FaultLocal && inc.Subject != "":
			// The cause was this node, not the subject: no lesson.
			r.Result, r.Judged = ResInconclusive, now
		case l.effect(inc, r, now):
			l.credit(inc, r, now)
			inc.Mitigated = true
		default:
			l.blame(inc, r, ResFailed, now)
		}
	}
}

// effect reports whether a remedy took effect although the incident is still
// open: the symptom it addressed is gone (another may remain); for counter
// symptoms, no new failures since it was applied (the window still holds the
// old ones); for a reroute, the routing table avoids the subject.
func (l *Loop) effect(inc *Incident, r *ActionRecord, now time.Time) bool {
	kind := r.Action.Kind
	present := false
	for _, s := range inc.Symptoms {
		present = present || s.Kind.family() == kind.family()
	}
	if !present {
		return true
	}
	if kind.counterKind() {
		p := l.mon.peers[inc.Subject]
		if p == nil {
			return true
		}
		n := l.mon.counts(p, now, r.Applied)
		for _, i := range counterIndices(kind) {
			if n[i] > 0 {
				return false
			}
		}
		return true
	}
	if r.Action.Type == ActReroute {
		return l.avoided(inc.Subject, r.Action.Scope)
	}
	return false
}

// avoided reports whether the routing table routes around peer: with
// AvoidLink, peer is reached through another neighbour and nothing uses the
// direct link; with AvoidNode, nothing but peer itself is routed through it.
// Without path reports there is no evidence either way (false).
func (l *Loop) avoided(peer string, scope Scope) bool {
	if scope == AvoidLink {
		p := l.mon.paths[peer]
		if p == nil || !p.reachable || p.via == peer {
			return false
		}
	} else if len(l.mon.paths) == 0 {
		return false
	}
	for dest, p := range l.mon.paths {
		if p.reachable && p.via == peer && (scope == AvoidLink || dest != peer) {
			return false
		}
	}
	return true
}

func counterIndices(k Kind) []int {
	switch k {
	case KindForgery:
		return []int{cForged}
	case KindAuth:
		return []int{cBadMAC, cBadAEAD, cReplays}
	case KindFlood:
		return []int{cFlooded}
	case KindHandshake:
		return []int{cHandshake}
	}
	return nil
}

// issue numbers an action and records it in its incident.
func (l *Loop) issue(inc *Incident, a Action, now time.Time) Action {
	l.lastAct++
	a.ID = l.lastAct
	res := ResPending
	if !a.Type.remedy() {
		res = ResDone
	}
	if a.Type == ActAlert {
		inc.alerted = Degraded
		if s, ok := inc.leading(); ok && s.Severity == Critical {
			inc.alerted = Critical
		}
	}
	inc.Actions = append(inc.Actions, ActionRecord{Action: cloneAction(a), Issued: now, Result: res})
	if n := len(inc.Actions) - l.cfg.MaxActions; n > 0 {
		// Drop the oldest; the remedy in flight is the newest, so it stays.
		inc.Actions = slices.Delete(inc.Actions, 0, n)
	}
	l.issued[a.ID] = inc
	if a.Type == ActAlert {
		about := inc.clone()
		a.About = &about
	}
	return a
}

// Outcome reports how the node carried out action id: err == nil means it was
// applied. A remedy that failed to apply counts as not working for its kind of
// incident and is backed off; an applied one is judged later. Unknown or
// already reported IDs are ignored.
func (l *Loop) Outcome(id uint64, err error, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	inc := l.issued[id]
	if inc == nil {
		return
	}
	delete(l.issued, id)
	r := inc.record(id)
	if r == nil {
		return
	}
	r.Applied = now
	if err != nil {
		r.Error = err.Error()
		if len(r.Error) > maxErrorLen {
			r.Error = r.Error[:maxErrorLen]
		}
	}
	if !r.Action.Type.remedy() || r.Result != ResPending {
		return
	}
	switch {
	case err != nil && inc.Open:
		l.blame(inc, r, ResError, now)
	case err != nil:
		r.Result, r.Judged = ResError, now
	case !inc.Open:
		r.Result, r.Judged = ResInconclusive, now
	default:
		r.Result = ResApplied
		if r.Action.Type == ActLowerMTU {
			l.k.markLowered(r.Action.Peer, now)
		}
	}
}

// Health returns the health state as of the last Step.
func (l *Loop) Health() Health {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.health
	h.Reasons = slices.Clone(h.Reasons)
	return h
}

// Symptoms returns the symptoms found by the last Step.
func (l *Loop) Symptoms() []Symptom {
	l.mu.Lock()
	defer l.mu.Unlock()
	return cloneSymptoms(l.syms)
}

// Incidents returns up to limit incidents, newest first (limit ≤ 0: all kept).
func (l *Loop) Incidents(limit int) []Incident {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.k.Incidents(limit)
}

// Snapshot is the loop's state for `x0t health --json` and for heartbeats.
type Snapshot struct {
	Health    Health     `json:"health"`
	Symptoms  []Symptom  `json:"symptoms,omitempty"`
	Incidents []Incident `json:"incidents"`
	Knowledge []Score    `json:"knowledge,omitempty"`
}

// Snapshot returns the health, the current symptoms, up to limit incidents
// and the knowledge scores, as of the last Step.
func (l *Loop) Snapshot(limit int) Snapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.health
	h.Reasons = slices.Clone(h.Reasons)
	return Snapshot{
		Health:    h,
		Symptoms:  cloneSymptoms(l.syms),
		Incidents: l.k.Incidents(limit),
		Knowledge: l.k.Scores(l.now),
	}
}

// Tick is Step followed by executing each action through ex and reporting its
// outcome, all at time now: the whole loop for callers that execute
// synchronously (the simulator). The loop's lock is not held while ex runs.
func (l *Loop) Tick(now time.Time, ex Executor) []Action {
	acts := l.Step(now)
	for _, a := range acts {
		l.Outcome(a.ID, Execute(ex, a), now)
	}
	return acts
}
