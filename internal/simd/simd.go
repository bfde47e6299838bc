// Package simd works around a CPU performance hazard left by third-party
// assembly.
//
// cloudflare/circl's AVX2 Keccak (used by ML-DSA-65) returns without
// VZEROUPPER. Until the upper halves of the YMM registers are cleared, every
// legacy-SSE instruction that follows on that thread pays a state-transition
// penalty; on this project's test machines SHA-256 (SHA-NI) of a certificate
// took 400 µs instead of 4 µs right after an ML-DSA operation, and AES-GCM
// (AES-NI) is exposed the same way. ClearUpper is called after every call into
// circl.
package simd

// ClearUpper clears the upper halves of the YMM registers (VZEROUPPER) where
// the CPU has AVX; elsewhere it does nothing.
func ClearUpper() { clearUpper() }
