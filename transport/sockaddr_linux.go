package transport

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The socket address helpers convert between netip.AddrPort and the raw
// sockaddr_in/sockaddr_in6 the kernel reads and writes, without allocating.
// Every name slot is a RawSockaddrInet6, which is large enough for both.

const (
	sizeofSockaddr4 = uint32(unix.SizeofSockaddrInet4)
	sizeofSockaddr6 = uint32(unix.SizeofSockaddrInet6)
)

// errAddrFamily is returned for a destination the socket's family can not reach.
var errAddrFamily = syscall.EAFNOSUPPORT

// putSockaddr writes ap into sa for a socket of the given family (AF_INET or
// AF_INET6; v6only tells whether an AF_INET6 socket may reach IPv4 peers) and
// returns the sockaddr length.
func putSockaddr(sa *unix.RawSockaddrInet6, ap netip.AddrPort, family int, v6only bool, zones *zoneCache) (uint32, error) {
	if !ap.IsValid() {
		return 0, fmt.Errorf("invalid address %v: %w", ap, syscall.EINVAL)
	}
	a := ap.Addr()
	port := ap.Port()
	if family == unix.AF_INET {
		a = a.Unmap()
		if !a.Is4() {
			return 0, fmt.Errorf("%v on an IPv4 socket: %w", ap, errAddrFamily)
		}
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		sa4.Family = unix.AF_INET
		putPort(&sa4.Port, port)
		sa4.Addr = a.As4()
		sa4.Zero = [8]uint8{}
		return sizeofSockaddr4, nil
	}
	var scope uint32
	if a.Is4() || a.Is4In6() {
		if v6only {
			return 0, fmt.Errorf("%v on an IPv6-only socket: %w", ap, errAddrFamily)
		}
		a = a.Unmap() // As16 of an IPv4 address is its IPv4-mapped form
	} else if z := a.Zone(); z != "" {
		var err error
		if scope, err = zones.index(z); err != nil {
			return 0, fmt.Errorf("%v: %w", ap, err)
		}
	}
	sa.Family = unix.AF_INET6
	putPort(&sa.Port, port)
	sa.Flowinfo = 0
	sa.Addr = a.As16()
	sa.Scope_id = scope
	return sizeofSockaddr6, nil
}

// getSockaddr decodes a sockaddr written by the kernel. IPv4-mapped IPv6
// addresses (IPv4 peers of a dual-stack socket) come back as plain IPv4.
func getSockaddr(sa *unix.RawSockaddrInet6, zones *zoneCache) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), getPort(&sa4.Port))
	case unix.AF_INET6:
		a := netip.AddrFrom16(sa.Addr)
		if a.Is4In6() {
			a = a.Unmap()
		} else if sa.Scope_id != 0 {
			a = a.WithZone(zones.name(sa.Scope_id))
		}
		return netip.AddrPortFrom(a, getPort(&sa.Port))
	}
	return netip.AddrPort{}
}

// The port of a sockaddr is in network byte order.
func putPort(p *uint16, port uint16) {
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(p))[:], port)
}

func getPort(p *uint16) uint16 {
	return binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(p))[:])
}

// zoneCache maps IPv6 zones (interface names) to scope ids and back, so that
// link-local peers do not cost an interface lookup per datagram.
type zoneCache struct {
	mu     sync.RWMutex
	byIdx  map[uint32]string
	byName map[string]uint32
}

func (z *zoneCache) name(idx uint32) string {
	z.mu.RLock()
	name, ok := z.byIdx[idx]
	z.mu.RUnlock()
	if ok {
		return name
	}
	name = strconv.FormatUint(uint64(idx), 10)
	if ifi, err := net.InterfaceByIndex(int(idx)); err == nil {
		name = ifi.Name
	}
	z.store(idx, name)
	return name
}

func (z *zoneCache) index(name string) (uint32, error) {
	z.mu.RLock()
	idx, ok := z.byName[name]
	z.mu.RUnlock()
	if ok {
		return idx, nil
	}
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		return uint32(n), nil // a numeric zone is the index itself
	}
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return 0, fmt.Errorf("zone %q: %w", name, err)
	}
	idx = uint32(ifi.Index)
	z.store(idx, name)
	return idx, nil
}

func (z *zoneCache) store(idx uint32, name string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.byIdx == nil {
		z.byIdx = make(map[uint32]string)
		z.byName = make(map[string]uint32)
	}
	if _, ok := z.byIdx[idx]; !ok {
		z.byIdx[idx] = name
	}
	z.byName[name] = idx
}
