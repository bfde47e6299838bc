package node

import (
	"fmt"
	"time"
)

// readyWaiter is a device or conn that can be polled without sleeping:
// overlay's kernel TUN and transport's UDPConn on Linux.
type readyWaiter interface {
	WaitReadable(until time.Time) bool
}

// busyPoll is one data-path loop's part of the low-latency mode
// (Config.BusyPoll). After the loop has moved user traffic it polls its
// descriptor for the window before its next read blocks: the next packet of
// a conversation, or the reply to the packet just sent, is then taken by a
// running thread instead of waking a sleeping one. Only user traffic opens
// the window; the mesh's own probes, which every link sends every 50 ms, do
// not, or an idle node would never stop polling.
type busyPoll struct {
	w      readyWaiter // nil: the mode is off or the descriptor can not be polled
	window time.Duration
	last   time.Time // when the loop last moved user traffic
	stats  *Stats
}

func (n *Node) newBusyPoll(x any) busyPoll {
	if n.cfg.BusyPoll <= 0 {
		return busyPoll{}
	}
	w, ok := x.(readyWaiter)
	if !ok {
		n.log.Warn("busy-poll: this device or socket can not be polled; its loop sleeps as usual", "type", fmt.Sprintf("%T", x))
		return busyPoll{}
	}
	return busyPoll{w: w, window: n.cfg.BusyPoll, stats: &n.stats}
}

// wait polls until the descriptor is readable or the window since the last
// user traffic has passed.
func (b *busyPoll) wait() {
	if b.w == nil {
		return
	}
	until := b.last.Add(b.window)
	if !time.Now().Before(until) {
		return
	}
	if b.w.WaitReadable(until) {
		b.stats.BusyPollReady.Add(1)
	} else {
		b.stats.BusyPollExpired.Add(1)
	}
}

// moved records that the loop has just moved user traffic.
func (b *busyPoll) moved() {
	if b.w != nil {
		b.last = time.Now()
	}
}
