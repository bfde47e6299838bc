// Package overlay provides the node's overlay network device: the place where
// the node agent reads the IP packets it must encrypt and send, and writes the
// packets it decrypted.
//
// Three implementations share one interface, [Device], so that the same node
// runs on a kernel TUN ([CreateTUN], Linux), on a userspace gVisor netstack
// ([NewNetstack], no root, many nodes per process) and on an in-memory device
// for tests and benchmarks ([NewMemDevice]).
//
// Buffers follow wireguard-go's convention: Read and Write take an offset, and
// the data plane passes 16 so that its packet header can be prepended in place
// without a copy.
package overlay

import "golang.zx2c4.com/wireguard/tun"

// Device is wireguard-go's batched packet device. It is an alias, not a new
// interface, so wireguard-go's implementations and test doubles plug in as-is.
type Device = tun.Device

// DefaultMTU leaves room for our packet header, the AEAD tag and an outer
// IPv6+UDP header inside a 1500-byte underlay MTU.
const DefaultMTU = 1420

// maxPacket is the largest IP packet (the IPv4 total-length and the IPv6
// payload-length fields are 16 bits; jumbograms are not supported).
const maxPacket = 65535
