package overlay

import (
	"errors"
	"net/netip"
)

// DefaultTUNName is the kernel interface name used when TUNConfig.Name is empty.
const DefaultTUNName = "x0t0"

// ErrNameInUse reports that a network interface with the requested name
// already exists, so a TUN with that name can not be created.
var ErrNameInUse = errors.New("interface name in use")

// TUNConfig describes a kernel TUN device and what the kernel must know about
// it.
type TUNConfig struct {
	// Name of the interface, at most 15 bytes; DefaultTUNName if empty.
	Name string
	// MTU of the interface; DefaultMTU if 0.
	MTU int
	// Addrs are the node's overlay addresses with the mesh prefix length
	// (e.g. 100.64.0.1/10, fd5e:...::1/48), so the kernel adds the connected
	// route that sends the whole mesh into the device.
	Addrs []netip.Prefix
	// Routes are extra destinations routed into the device (e.g. subnets
	// that mesh peers advertise); host bits are ignored.
	Routes []netip.Prefix
}

func (c TUNConfig) withDefaults() TUNConfig {
	if c.Name == "" {
		c.Name = DefaultTUNName
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	return c
}
