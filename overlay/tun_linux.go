package overlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/x0tta6bl4/x0t/internal/busypoll"
)

// tunCloneDevice is the device wireguard-go opens; a variable so a test can
// check the error for a missing device.
var tunCloneDevice = "/dev/net/tun"

// linkGoneTimeout bounds how long Close waits for the kernel to unregister
// the interface after the last file descriptor is closed.
const linkGoneTimeout = 5 * time.Second

// TUN is a kernel TUN device created by wireguard-go and configured over
// netlink. It belongs to the network namespace of the thread that created
// it; all later configuration goes through a netlink socket opened there, so
// Close and MTU work from any goroutine.
//
// wireguard-go opens the device with IFF_VNET_HDR when the kernel allows, so
// Read may split one TSO/USO super-packet into many packets (pass BatchSize()
// buffers, each able to hold a full MTU-sized packet) and Write coalesces
// packets of one flow into super-packets (GRO). Write may therefore modify
// the buffers it is given; it coalesces only into buffers with spare
// capacity (up to 64 KiB), and it needs offset >= 10 for the virtio header.
type TUN struct {
	name  string
	index int
	dev   *tunDevice

	mu     sync.RWMutex    // guards nl against Close
	nl     *netlink.Handle // nil once closed
	addrs  []*netlink.Addr
	routes []*netlink.Route

	closing   atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// CreateTUN creates the TUN device cfg describes in the calling thread's
// network namespace, assigns its addresses (IPv6 ones without duplicate
// address detection, so they are usable at once), brings it up and adds the
// extra routes. On failure nothing it created is left behind.
func CreateTUN(cfg TUNConfig) (*TUN, error) {
	cfg = cfg.withDefaults()
	wrap := func(err error) error { return fmt.Errorf("overlay: create TUN %q: %w", cfg.Name, err) }
	if err := cfg.validate(); err != nil {
		return nil, wrap(err)
	}

	// Every step below must run in one network namespace: the caller's.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	// Check what wireguard-go would otherwise report unclearly, or by
	// leaking the descriptor it opened.
	if fi, err := os.Stat(tunCloneDevice); err != nil {
		return nil, wrap(fmt.Errorf("%s unavailable: %w", tunCloneDevice, err))
	} else if fi.Mode()&os.ModeCharDevice == 0 {
		return nil, wrap(fmt.Errorf("%s is not a character device", tunCloneDevice))
	}
	if !hasNetAdmin() {
		return nil, wrap(fmt.Errorf("need CAP_NET_ADMIN: %w", os.ErrPermission))
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, wrap(fmt.Errorf("open netlink: %w", err))
	}
	if _, err := h.LinkByName(cfg.Name); err == nil {
		h.Close()
		return nil, wrap(ErrNameInUse)
	} else if !isLinkNotFound(err) {
		h.Close()
		return nil, wrap(fmt.Errorf("look up link: %w", err))
	}

	dev, err := tun.CreateTUN(cfg.Name, cfg.MTU)
	if err != nil {
		h.Close()
		if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST) {
			// Lost a race with someone creating the same name.
			return nil, wrap(fmt.Errorf("%w: %w", ErrNameInUse, err))
		}
		return nil, wrap(err)
	}
	t := &TUN{name: cfg.Name, nl: h}
	t.dev = newTUNDevice(dev, t)
	if err := t.configure(cfg); err != nil {
		return nil, errors.Join(wrap(err), t.Close())
	}
	return t, nil
}

func (c TUNConfig) validate() error {
	if len(c.Name) >= unix.IFNAMSIZ || c.Name == "." || c.Name == ".." ||
		strings.ContainsAny(c.Name, "/:% \t\n") {
		return fmt.Errorf("invalid interface name %q", c.Name)
	}
	hasV6 := false
	for _, p := range c.Addrs {
		if !p.IsValid() || p.Addr().Is4In6() {
			return fmt.Errorf("invalid address %v", p)
		}
		hasV6 = hasV6 || p.Addr().Is6()
	}
	for _, p := range c.Routes {
		if !p.IsValid() || p.Addr().Is4In6() {
			return fmt.Errorf("invalid route %v", p)
		}
	}
	return checkMTU(c.MTU, hasV6)
}

// configure adds addresses, brings the link up, then adds routes, which the
// kernel only accepts through a link that is up.
func (t *TUN) configure(cfg TUNConfig) error {
	link, err := t.nl.LinkByName(t.name)
	if err != nil {
		return fmt.Errorf("look up link: %w", err)
	}
	t.index = link.Attrs().Index
	for _, p := range cfg.Addrs {
		a := &netlink.Addr{IPNet: ipNet(p)}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := t.nl.AddrAdd(link, a); err != nil {
			return fmt.Errorf("add address %v: %w", p, err)
		}
		a.LinkIndex = t.index
		t.addrs = append(t.addrs, a)
	}
	if err := t.nl.LinkSetUp(link); err != nil {
		return fmt.Errorf("set link up: %w", err)
	}
	for _, p := range cfg.Routes {
		r := &netlink.Route{LinkIndex: t.index, Dst: ipNet(p.Masked()), Scope: netlink.SCOPE_LINK}
		if err := t.nl.RouteAdd(r); err != nil {
			return fmt.Errorf("add route %v: %w", p.Masked(), err)
		}
		t.routes = append(t.routes, r)
	}
	return t.waitAddrsLocal(cfg.Addrs)
}

// addrReadyTimeout bounds the wait for the kernel to make addresses local.
const addrReadyTimeout = 3 * time.Second

// waitAddrsLocal waits until the kernel routes every address to the local
// host. IPv6 addresses become local from a kernel work queue even without
// DAD, so a packet written right after configuration could otherwise be
// dropped as "not for this host".
func (t *TUN) waitAddrsLocal(addrs []netip.Prefix) error {
	deadline := time.Now().Add(addrReadyTimeout)
	for _, p := range addrs {
		for {
			rs, err := t.nl.RouteGet(p.Addr().AsSlice())
			if err == nil && len(rs) > 0 && rs[0].Type == unix.RTN_LOCAL {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("address %v not local after %v (last error: %v)", p.Addr(), addrReadyTimeout, err)
			}
			time.Sleep(time.Millisecond)
		}
	}
	return nil
}

// Device returns the packet interface of the TUN. Closing it closes the TUN.
func (t *TUN) Device() Device { return t.dev }

// Name returns the interface name.
func (t *TUN) Name() string { return t.name }

// Close removes the routes and addresses it added, closes the device (the
// kernel then deletes the interface) and waits until the interface is gone,
// so the name can be reused at once. It is idempotent and returns the first
// call's result.
func (t *TUN) Close() error {
	t.closeOnce.Do(func() { t.closeErr = t.close() })
	return t.closeErr
}

func (t *TUN) close() error {
	t.closing.Store(true)
	t.mu.Lock()
	h := t.nl
	t.nl = nil
	t.mu.Unlock()
	defer h.Close()

	var errs []error
	for _, r := range t.routes {
		if err := h.RouteDel(r); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("delete route %v: %w", r.Dst, err))
		}
	}
	for _, a := range t.addrs {
		if err := h.AddrDel(nil, a); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("delete address %v: %w", a.IPNet, err))
		}
	}
	if err := t.dev.Device.Close(); err != nil && !isCancelRace(err) {
		errs = append(errs, fmt.Errorf("close device: %w", err))
	}
	if err := waitLinkGone(h, t.index, t.name); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("overlay: close TUN %q: %w", t.name, err)
	}
	return nil
}

func waitLinkGone(h *netlink.Handle, index int, name string) error {
	if index == 0 {
		return nil
	}
	deadline := time.Now().Add(linkGoneTimeout)
	for {
		l, err := h.LinkByIndex(index)
		switch {
		case err != nil && isLinkNotFound(err):
			return nil
		case err == nil && l.Attrs().Name != name:
			return nil // index reused by another link
		case time.Now().After(deadline):
			if err == nil {
				err = errors.New("still present")
			}
			return fmt.Errorf("link did not go away within %v: %w", linkGoneTimeout, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// mtu reads the MTU over the TUN's own netlink socket: wireguard-go's MTU
// looks the name up in the calling thread's namespace, which is wrong when
// the TUN lives in another one.
func (t *TUN) mtu() (int, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.nl == nil {
		return 0, os.ErrClosed
	}
	l, err := t.nl.LinkByIndex(t.index)
	if err != nil {
		return 0, fmt.Errorf("overlay: TUN %q MTU: %w", t.name, err)
	}
	return l.Attrs().MTU, nil
}

// tunDevice wraps wireguard-go's device so that closing it tears down the
// whole TUN, MTU works across namespaces, Write reports packets (upstream
// reports bytes), and Events is always drained: upstream's listener
// goroutines block on a full event channel and would then never exit.
type tunDevice struct {
	tun.Device
	t      *TUN
	events chan tun.Event
	poll   *busypoll.Poller // nil if the device has no pollable file
}

func newTUNDevice(dev tun.Device, t *TUN) *tunDevice {
	d := &tunDevice{Device: dev, t: t, events: make(chan tun.Event, 8)}
	if f, ok := dev.(interface{ File() *os.File }); ok {
		if rc, err := f.File().SyscallConn(); err == nil {
			d.poll = busypoll.New(rc, &t.closing)
		}
	}
	go d.pumpEvents(dev.Events())
	return d
}

// maxPendingEvents bounds the events kept for a consumer that does not read
// them; the oldest are dropped first.
const maxPendingEvents = 16

func (d *tunDevice) pumpEvents(in <-chan tun.Event) {
	defer close(d.events)
	var pending []tun.Event
	for {
		var out chan tun.Event
		var next tun.Event
		if len(pending) > 0 {
			out, next = d.events, pending[0]
		}
		select {
		case ev, ok := <-in:
			if !ok {
				return
			}
			if len(pending) > 0 && pending[len(pending)-1] == ev {
				continue // a repeat says nothing new
			}
			if len(pending) == maxPendingEvents {
				pending = append(pending[:0], pending[1:]...)
			}
			pending = append(pending, ev)
		case out <- next:
			pending = append(pending[:0], pending[1:]...)
		}
	}
}

// Events yields the device's up/down/MTU events; it is closed by Close.
func (d *tunDevice) Events() <-chan tun.Event { return d.events }

// MTU returns the interface's current MTU.
func (d *tunDevice) MTU() (int, error) { return d.t.mtu() }

// Read reads one packet, or the packets one kernel super-packet splits into.
// tun.ErrTooManySegments means bufs were too few: the super-packet is lost
// but the device is fine, keep reading. Once the TUN is closing every error
// is reported as os.ErrClosed, so a reader loop has one condition to stop on
// (upstream may first return its netlink listener's shutdown error).
func (d *tunDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := d.Device.Read(bufs, sizes, offset)
	if err != nil && d.t.closing.Load() {
		return 0, os.ErrClosed
	}
	return n, err
}

// WaitReadable polls the device without sleeping until a packet waits or
// until passes (package busypoll) and reports whether Read will return at
// once. Call it from the reading goroutine; a closing TUN reports false.
func (d *tunDevice) WaitReadable(until time.Time) bool {
	if d.poll == nil {
		return false
	}
	ready, _ := d.poll.Wait(until) // an error comes back from the read
	return ready
}

// Write writes the packets bufs[i][offset:] and returns len(bufs) on
// success. On error some packets may have been written: do not retry.
func (d *tunDevice) Write(bufs [][]byte, offset int) (int, error) {
	if _, err := d.Device.Write(bufs, offset); err != nil {
		if d.t.closing.Load() {
			return 0, os.ErrClosed
		}
		return 0, err
	}
	return len(bufs), nil
}

// Close closes the whole TUN, as (*TUN).Close does.
func (d *tunDevice) Close() error { return d.t.Close() }

// isCancelRace reports the error wireguard-go's Close returns when its
// netlink listener exits on its own between Close signalling shutdown and
// Close waking it through a pipe the listener has already closed. The device
// file is closed all the same, and Close then checks that the link is gone.
func isCancelRace(err error) bool {
	return errors.Is(err, unix.EPIPE) || errors.Is(err, os.ErrClosed)
}

func ipNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}

func isLinkNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// isGone reports netlink errors meaning the object is already gone, which
// Close treats as success.
func isGone(err error) bool {
	return errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) ||
		errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.ENODEV)
}

// hasNetAdmin reports whether the calling thread may create interfaces. If
// the capability can not be read it answers true and lets the kernel decide.
func hasNetAdmin() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return true
	}
	return data[unix.CAP_NET_ADMIN/32].Effective&(1<<(unix.CAP_NET_ADMIN%32)) != 0
}
