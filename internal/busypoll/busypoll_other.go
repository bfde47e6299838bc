//go:build !linux

package busypoll

import "errors"

var errUnsupported = errors.New("busypoll: not supported on this system")

func readable(uintptr) (bool, error) { return false, errUnsupported }

func yield() {}
