package simd

import "golang.org/x/sys/cpu"

var hasAVX = cpu.X86.HasAVX

func clearUpper() {
	if hasAVX {
		vzeroupper()
	}
}

//go:noescape
func vzeroupper()
