// Package busypoll waits for a file descriptor to become readable by polling
// it, never sleeping, until a deadline: the node's opt-in low-latency mode.
//
// A reader that sleeps in the kernel must be woken when its next packet
// arrives, and waking a thread on an idle CPU costs tens of microseconds on a
// virtual machine whose idle vCPUs halt (docs/perf.md measures 33–60 µs per
// wakeup, four of them per echo through a tunnel). Polling keeps the thread on
// its CPU and sees the packet within a microsecond or two, at the price of
// that CPU while it polls. The Linux kernel's SO_BUSY_POLL makes the same
// trade for sockets; this works for any pollable descriptor, a TUN included.
package busypoll

import (
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
)

// yieldEvery is how many polls pass between looks at the clock and turns for
// the process's other goroutines (a poll takes about a microsecond).
const yieldEvery = 16

// Poller polls one descriptor. It is used by one goroutine at a time, the
// descriptor's reader, and it does not allocate.
type Poller struct {
	rc   syscall.RawConn
	stop *atomic.Bool // the owner is closing: give up at once

	fn    func(fd uintptr) // p.poll, bound once so that Wait does not allocate
	until time.Time
	ready bool
	err   error
}

// New returns a Poller for the descriptor behind rc. Once stop is true, Wait
// returns false without polling: a Close waits for a descriptor's users, and a
// poller must not hold it up.
func New(rc syscall.RawConn, stop *atomic.Bool) *Poller {
	p := &Poller{rc: rc, stop: stop}
	p.fn = p.poll
	return p
}

// Wait polls until the descriptor is readable, reporting true, or until the
// deadline passes or the owner closes, reporting false; a false result says
// the caller's next read may block. Between polls the thread gives its CPU to
// any other runnable thread (sched_yield) and, now and then, its Go processor
// to other goroutines: on a machine with fewer cores than busy threads a
// poller must not stand between a woken reader and the CPU.
func (p *Poller) Wait(until time.Time) (bool, error) {
	p.until, p.ready, p.err = until, false, nil
	if err := p.rc.Control(p.fn); err != nil {
		return false, err
	}
	return p.ready, p.err
}

func (p *Poller) poll(fd uintptr) {
	for i := 1; ; i++ {
		if p.stop.Load() {
			return
		}
		ready, err := readable(fd)
		if ready || err != nil {
			p.ready, p.err = ready, err
			return
		}
		yield()
		if i%yieldEvery == 0 {
			if !time.Now().Before(p.until) {
				return
			}
			runtime.Gosched()
		}
	}
}
