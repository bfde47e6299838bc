//go:build !linux

package overlay

import (
	"errors"
	"fmt"
)

// TUN is a kernel TUN device; only Linux is supported for now.
type TUN struct{}

// CreateTUN fails on this platform: use NewNetstack instead.
func CreateTUN(cfg TUNConfig) (*TUN, error) {
	return nil, fmt.Errorf("overlay: create TUN %q: %w", cfg.withDefaults().Name, errors.ErrUnsupported)
}

// Device returns nil.
func (t *TUN) Device() Device { return nil }

// Name returns "".
func (t *TUN) Name() string { return "" }

// Close does nothing.
func (t *TUN) Close() error { return nil }
