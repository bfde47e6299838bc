package heal

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Result is what became of an action.
type Result string

// Action results.
const (
	ResPending      Result = "pending"      // issued, no outcome yet
	ResApplied      Result = "applied"      // the node carried it out; not judged yet
	ResWorked       Result = "worked"       // the symptom it addressed went away
	ResFailed       Result = "failed"       // applied, but the symptom stayed
	ResError        Result = "error"        // the node could not carry it out
	ResTimeout      Result = "timeout"      // no outcome was reported in time
	ResInconclusive Result = "inconclusive" // the cause turned out to be elsewhere, or the subject left
	ResDone         Result = "done"         // alerts and restores: nothing to judge
)

// ActionRecord is one action in an incident's history.
type ActionRecord struct {
	Action  Action    `json:"action"`
	Issued  time.Time `json:"issued"`
	Applied time.Time `json:"applied,omitzero"` // when the outcome was reported
	Judged  time.Time `json:"judged,omitzero"`
	Result  Result    `json:"result"`
	Error   string    `json:"error,omitempty"`
}

// Incident is one subject's trouble from the first symptom until the symptoms
// have been gone for Config.ResolveHold. There is at most one open incident
// per subject (a peer, or "" for this node); when the symptoms change kind
// (loss, then the link goes down) it is still the same incident, so an action
// is never credited because its symptom turned into another one.
type Incident struct {
	ID       uint64         `json:"id"`
	Subject  string         `json:"subject"` // peer ID; "" for this node
	Kind     Kind           `json:"kind"`    // the leading symptom now, or when it ended
	Kinds    []Kind         `json:"kinds"`   // every leading kind it had, in order
	Fault    Fault          `json:"fault"`
	Severity State          `json:"severity"` // the worst it reached
	Open     bool           `json:"open"`
	Started  time.Time      `json:"started"`
	LastSeen time.Time      `json:"last_seen"`
	Resolved time.Time      `json:"resolved,omitzero"` // when the symptoms went away (or it was closed)
	Note     string         `json:"note,omitempty"`    // why it closed, when not by recovery
	Symptoms []Symptom      `json:"symptoms"`          // the latest symptoms, leading first
	Actions  []ActionRecord `json:"actions,omitempty"`
	Worked   ActionType     `json:"worked,omitempty"` // the remedy credited with the fix
	// Mitigated: a remedy worked but the fault itself persists (traffic
	// avoids a bad link, a quarantined peer's failures stopped counting);
	// no more actions are planned unless the incident changes kind.
	Mitigated bool `json:"mitigated,omitempty"`

	alerted   State // the severity of the last alert; "" for none
	clearedAt time.Time
}

// leading is the incident's leading symptom.
func (inc *Incident) leading() (Symptom, bool) {
	if len(inc.Symptoms) == 0 {
		return Symptom{}, false
	}
	return inc.Symptoms[0], true
}

// current is the remedy in flight (pending or applied, not judged), if any:
// one at a time per incident, so a cleared symptom is credited to one action.
func (inc *Incident) current() *ActionRecord {
	for i := len(inc.Actions) - 1; i >= 0; i-- {
		r := &inc.Actions[i]
		if r.Action.Type.remedy() && (r.Result == ResPending || r.Result == ResApplied) {
			return r
		}
	}
	return nil
}

func (inc *Incident) record(id uint64) *ActionRecord {
	for i := range inc.Actions {
		if inc.Actions[i].Action.ID == id {
			return &inc.Actions[i]
		}
	}
	return nil
}

// IncidentBrief is an incident as a heartbeat carries it. Its fields match
// api.IncidentReport, so the node converts with api.IncidentReport(b).
type IncidentBrief struct {
	Time     time.Time
	Kind     string
	Subject  string
	Action   string
	Resolved bool
}

// Brief summarises the incident: the remedy that worked, or else the last
// action taken.
func (inc Incident) Brief() IncidentBrief {
	b := IncidentBrief{Time: inc.Started, Kind: string(inc.Kind), Subject: inc.Subject, Resolved: !inc.Open, Action: string(inc.Worked)}
	if b.Action == "" && len(inc.Actions) > 0 {
		b.Action = string(inc.Actions[len(inc.Actions)-1].Action.Type)
	}
	return b
}

// clone deep-copies an incident, so callers can not reach the loop's state.
func (inc *Incident) clone() Incident {
	c := *inc
	c.Kinds = slices.Clone(inc.Kinds)
	c.Symptoms = cloneSymptoms(inc.Symptoms)
	c.Actions = slices.Clone(inc.Actions)
	for i := range c.Actions {
		c.Actions[i].Action = cloneAction(c.Actions[i].Action)
	}
	return c
}

func cloneSymptoms(ss []Symptom) []Symptom {
	out := slices.Clone(ss)
	for i := range out {
		out[i].Evidence = slices.Clone(out[i].Evidence)
	}
	return out
}

func cloneAction(a Action) Action {
	if a.Report != nil {
		r := *a.Report
		r.Evidence = slices.Clone(r.Evidence)
		a.Report = &r
	}
	a.About = nil
	return a
}

// Score is what Knowledge has learnt about one action for one kind of
// incident; counts decay with Config.HalfLife.
type Score struct {
	Kind   Kind       `json:"kind"`
	Action ActionType `json:"action"`
	Worked float64    `json:"worked"`
	Failed float64    `json:"failed"`
	Score  float64    `json:"score"` // (worked+1)/(worked+failed+2)
}

type scoreKey struct {
	kind Kind
	act  ActionType
}

type tally struct {
	worked, failed float64
	at             time.Time // when the counts were last decayed
}

// decayed returns the counts as of now, halved every half-life.
func (t tally) decayed(now time.Time, halfLife time.Duration) (w, f float64) {
	if dt := now.Sub(t.at); dt > 0 {
		k := math.Exp2(-dt.Seconds() / halfLife.Seconds())
		return t.worked * k, t.failed * k
	}
	return t.worked, t.failed
}

type backoffKey struct {
	subject string
	act     ActionType
}

type backoff struct {
	failures int
	until    time.Time
}

// Knowledge is the K of MAPE-K: the incident log (open incidents and a ring
// of closed ones), per-(kind, action) success scores, per-(subject, action)
// backoff after failures, and which peers already had their MTU lowered. Its
// memory is bounded. Not safe for concurrent use.
type Knowledge struct {
	cfg     Config
	scores  map[scoreKey]*tally
	backoff map[backoffKey]*backoff
	lowered map[string]time.Time
	open    map[string]*Incident
	closed  []*Incident // ring of Config.MaxIncidents
	next    int         // next slot in closed once full
	lastID  uint64
}

// NewKnowledge returns an empty knowledge base.
func NewKnowledge(cfg Config) *Knowledge {
	return &Knowledge{
		cfg:     cfg.withDefaults(),
		scores:  make(map[scoreKey]*tally),
		backoff: make(map[backoffKey]*backoff),
		lowered: make(map[string]time.Time),
		open:    make(map[string]*Incident),
	}
}

// Learn records that action a worked (or not) for an incident of this kind.
// Alerts and restores are not remedies and are not scored.
func (k *Knowledge) Learn(kind Kind, a ActionType, worked bool, now time.Time) {
	if !a.remedy() {
		return
	}
	key := scoreKey{kind, a}
	t := k.scores[key]
	if t == nil {
		if len(k.scores) >= len(kindOrder)*8 { // unknown kinds: keep the table bounded
			return
		}
		t = &tally{at: now}
		k.scores[key] = t
	}
	t.worked, t.failed = t.decayed(now, k.cfg.HalfLife)
	t.at = later(t.at, now)
	if worked {
		t.worked++
	} else {
		t.failed++
	}
}

// Score is the estimated chance that action a fixes an incident of this kind:
// the mean of a Beta(1,1) prior updated with the decayed successes w and
// failures f, (w+1)/(w+f+2). An untried action scores 0.5, one success lifts it
// to 0.67, one failure drops it to 0.33, and old experience fades.
func (k *Knowledge) Score(kind Kind, a ActionType, now time.Time) float64 {
	w, f := k.tally(kind, a, now)
	return (w + 1) / (w + f + 2)
}

func (k *Knowledge) tally(kind Kind, a ActionType, now time.Time) (w, f float64) {
	if t := k.scores[scoreKey{kind, a}]; t != nil {
		return t.decayed(now, k.cfg.HalfLife)
	}
	return 0, 0
}

// Scores lists everything learnt, as of now, sorted by kind and best score.
func (k *Knowledge) Scores(now time.Time) []Score {
	out := make([]Score, 0, len(k.scores))
	for key, t := range k.scores {
		w, f := t.decayed(now, k.cfg.HalfLife)
		out = append(out, Score{Kind: key.kind, Action: key.act, Worked: round3(w), Failed: round3(f), Score: round3((w + 1) / (w + f + 2))})
	}
	slices.SortFunc(out, func(a, b Score) int {
		if a.Kind != b.Kind {
			return strings.Compare(string(a.Kind), string(b.Kind))
		}
		if a.Score != b.Score {
			if a.Score > b.Score {
				return -1
			}
			return 1
		}
		return strings.Compare(string(a.Action), string(b.Action))
	})
	return out
}

func round3(x float64) float64 { return finite(math.Round(x*1000) / 1000) }

// explain says why a remedy ranks where it does, for the action's reason.
func (k *Knowledge) explain(kind Kind, a ActionType, now time.Time) string {
	w, f := k.tally(kind, a, now)
	if w+f < 0.01 {
		return "no history, default order"
	}
	return fmt.Sprintf("score %.2f from %.1f worked / %.1f failed before", (w+1)/(w+f+2), w, f)
}

// Blocked reports whether action a on subject is in backoff at now, and until
// when.
func (k *Knowledge) Blocked(subject string, a ActionType, now time.Time) (time.Time, bool) {
	if b := k.backoff[backoffKey{subject, a}]; b != nil && now.Before(b.until) {
		return b.until, true
	}
	return time.Time{}, false
}

// failed starts or doubles the backoff of action a on subject: BackoffBase
// after the first failure, doubling up to BackoffMax.
func (k *Knowledge) failed(subject string, a ActionType, now time.Time) {
	key := backoffKey{subject, a}
	b := k.backoff[key]
	if b == nil {
		if len(k.backoff) >= 8*(k.cfg.MaxPeers+1) {
			evictOldest(k.backoff, func(b *backoff) time.Time { return b.until })
		}
		b = &backoff{}
		k.backoff[key] = b
	}
	b.failures++
	d := k.cfg.BackoffBase
	for i := 1; i < b.failures && d < k.cfg.BackoffMax; i++ {
		d *= 2
	}
	b.until = now.Add(min(d, k.cfg.BackoffMax))
}

// succeeded clears the backoff of action a on subject.
func (k *Knowledge) succeeded(subject string, a ActionType) {
	delete(k.backoff, backoffKey{subject, a})
}

// MTULowered reports whether LowerMTU was applied to peer ("" for all) within
// the last HalfLife: lowering again would not help.
func (k *Knowledge) MTULowered(peer string, now time.Time) bool {
	t, ok := k.lowered[peer]
	return ok && now.Sub(t) < k.cfg.HalfLife
}

func (k *Knowledge) markLowered(peer string, now time.Time) {
	if _, ok := k.lowered[peer]; !ok && len(k.lowered) >= k.cfg.MaxPeers+1 {
		evictOldest(k.lowered, func(t time.Time) time.Time { return t })
	}
	k.lowered[peer] = now
}

// prune forgets backoffs that ended BackoffMax ago (the failure count starts
// afresh) and lowered MTUs older than HalfLife.
func (k *Knowledge) prune(now time.Time) {
	for key, b := range k.backoff {
		if now.Sub(b.until) > k.cfg.BackoffMax {
			delete(k.backoff, key)
		}
	}
	for p, t := range k.lowered {
		if now.Sub(t) >= k.cfg.HalfLife {
			delete(k.lowered, p)
		}
	}
}

// Open returns the open incidents, oldest first. The pointers are the
// knowledge base's own: Plan reads them, only the Loop changes them.
func (k *Knowledge) Open() []*Incident {
	out := make([]*Incident, 0, len(k.open))
	for _, inc := range k.open {
		out = append(out, inc)
	}
	slices.SortFunc(out, func(a, b *Incident) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// openIncident starts an incident for subject.
func (k *Knowledge) openIncident(subject string, now time.Time) *Incident {
	k.lastID++
	inc := &Incident{ID: k.lastID, Subject: subject, Open: true, Started: now, LastSeen: now, Severity: Degraded}
	k.open[subject] = inc
	return inc
}

// close moves an incident from the open set to the ring of closed ones.
func (k *Knowledge) close(inc *Incident) {
	inc.Open = false
	delete(k.open, inc.Subject)
	if len(k.closed) < k.cfg.MaxIncidents {
		k.closed = append(k.closed, inc)
		return
	}
	k.closed[k.next] = inc
	k.next = (k.next + 1) % k.cfg.MaxIncidents
}

// Incidents returns up to limit incidents, newest first (open and closed
// alike; limit ≤ 0 means all kept), as deep copies.
func (k *Knowledge) Incidents(limit int) []Incident {
	all := k.Open()
	all = append(all, k.closed...)
	slices.SortFunc(all, func(a, b *Incident) int { return cmp.Compare(b.ID, a.ID) })
	if limit > 0 && len(all) > limit {
		all = all[:limit]
	}
	out := make([]Incident, len(all))
	for i, inc := range all {
		out[i] = inc.clone()
	}
	return out
}
