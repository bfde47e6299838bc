// Package progress shows what a long command is doing while a person watches:
// one line per phase with a spinner and the elapsed time, redrawn in place, then
// a final line with how long the phase took.
//
// It writes only to a terminal. In a pipe, a file or a CI log it writes
// nothing: carriage-return redraws would litter the file, and the command's own
// output and logs already say the same things there.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"
)

// Reporter draws phases on one writer, normally os.Stderr. A nil or disabled
// Reporter is valid: all its methods do nothing, so callers never branch.
type Reporter struct {
	w       io.Writer
	enabled bool
	tick    time.Duration
	now     func() time.Time

	mu     sync.Mutex
	cur    *Phase // the phase being drawn, if any
	drawn  bool   // a spinner line is on screen (not yet cleared)
	held   bool   // wrapped output left a partial line: do not draw over it
	frames int
}

// spinner frames: braille dots (every terminal font since the 2010s has them).
var frames = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

// New returns a Reporter that draws on w if w is a terminal (an *os.File or
// anything else with an Fd method whose descriptor is a TTY, and TERM is not
// "dumb"), and draws nothing otherwise.
func New(w io.Writer) *Reporter {
	return &Reporter{w: w, enabled: IsTerminal(w), tick: 100 * time.Millisecond, now: time.Now}
}

// Forced returns a Reporter that draws on w whatever w is (tests, or a flag that
// asks for progress in a pipe).
func Forced(w io.Writer) *Reporter {
	return &Reporter{w: w, enabled: true, tick: 100 * time.Millisecond, now: time.Now}
}

// IsTerminal reports whether w writes to a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok || os.Getenv("TERM") == "dumb" {
		return false
	}
	return term.IsTerminal(int(f.Fd()))
}

// Enabled reports whether the Reporter draws anything.
func (r *Reporter) Enabled() bool { return r != nil && r.enabled }

// Phase is one step being shown. Its methods are safe on a no-op phase.
type Phase struct {
	r     *Reporter
	msg   string
	start time.Time
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

// Start shows msg with a spinner and the elapsed time until the phase ends. A
// phase still running when another starts is ended as done first: phases are
// sequential, one line each.
func (r *Reporter) Start(format string, args ...any) *Phase {
	if !r.Enabled() {
		return &Phase{}
	}
	p := &Phase{r: r, msg: fmt.Sprintf(format, args...), start: r.now(), stop: make(chan struct{}), done: make(chan struct{})}
	r.mu.Lock()
	prev := r.cur
	r.mu.Unlock()
	if prev != nil {
		prev.Done()
	}
	r.mu.Lock()
	r.cur = p
	r.drawLocked()
	r.mu.Unlock()
	go p.spin()
	return p
}

func (p *Phase) spin() {
	defer close(p.done)
	t := time.NewTicker(p.r.tick)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.r.mu.Lock()
			if p.r.cur == p {
				p.r.frames++
				p.r.drawLocked()
			}
			p.r.mu.Unlock()
		}
	}
}

// drawLocked redraws the current phase's line in place.
func (r *Reporter) drawLocked() {
	p := r.cur
	if p == nil || r.held {
		return
	}
	fmt.Fprintf(r.w, "\r\x1b[K%s %s  %s", frames[r.frames%len(frames)], p.msg, elapsed(r.now().Sub(p.start)))
	r.drawn = true
}

// clearLocked erases the spinner line so other output starts on a clean line.
func (r *Reporter) clearLocked() {
	if r.drawn {
		io.WriteString(r.w, "\r\x1b[K")
		r.drawn = false
	}
}

// Update changes the phase's message (e.g. a count that moves).
func (p *Phase) Update(format string, args ...any) {
	if p.r == nil {
		return
	}
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	p.msg = fmt.Sprintf(format, args...)
	if p.r.cur == p {
		p.r.drawLocked()
	}
}

// Done ends the phase as a success: "✓ msg (1.2s)".
func (p *Phase) Done() { p.finish("✓") }

// Fail ends the phase as a failure: "✗ msg (1.2s)".
func (p *Phase) Fail() { p.finish("✗") }

// End ends the phase as a success if err is nil, as a failure otherwise. Its
// signature fits callbacks that report how a wait ended.
func (p *Phase) End(err error) {
	if err != nil {
		p.Fail()
		return
	}
	p.Done()
}

func (p *Phase) finish(mark string) {
	if p.r == nil {
		return
	}
	p.once.Do(func() {
		close(p.stop)
		<-p.done // no redraw after the final line
		r := p.r
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.cur == p {
			r.cur = nil
		}
		r.clearLocked()
		if r.held { // finish the other output's line first
			io.WriteString(r.w, "\n")
			r.held = false
		}
		fmt.Fprintf(r.w, "%s %s (%s)\n", mark, p.msg, elapsed(r.now().Sub(p.start)))
	})
}

// Wrap returns a writer for other output sharing the screen (the command's
// report on stdout): each write first erases the spinner line and then redraws
// it below, so report lines and the spinner never end up on one line. When the
// Reporter is disabled it returns w itself.
func (r *Reporter) Wrap(w io.Writer) io.Writer {
	if !r.Enabled() {
		return w
	}
	return &wrapped{r: r, w: w}
}

type wrapped struct {
	r *Reporter
	w io.Writer
}

func (o *wrapped) Write(b []byte) (int, error) {
	o.r.mu.Lock()
	defer o.r.mu.Unlock()
	o.r.clearLocked()
	n, err := o.w.Write(b)
	// Redraw only after a complete line: a partial line is continued by the
	// next write, and the spinner drawn over it would erase it.
	if len(b) > 0 {
		o.r.held = b[len(b)-1] != '\n'
	}
	o.r.drawLocked()
	return n, err
}

func elapsed(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}
