package handshake

import (
	"crypto/hkdf"
	"crypto/sha256"

	"golang.org/x/crypto/chacha20poly1305"
)

// The symmetric state follows the Noise framework: a chaining key ck into which
// every shared secret is mixed with HKDF, and a transcript hash h of every public
// value and ciphertext, used as AEAD associated data so that any change to a
// message breaks the next AEAD check.
const (
	construction = "x0t-hs-v1 X25519 MLKEM768 ChaChaPoly SHA256"
	identifier   = "x0tta6bl4 mesh handshake v1"
)

type symmetricState struct {
	ck [32]byte
	h  [32]byte
}

func newSymmetricState() symmetricState {
	var s symmetricState
	s.ck = sha256.Sum256([]byte(construction))
	s.h = hash(s.ck[:], []byte(identifier))
	return s
}

func hash(parts ...[]byte) [32]byte {
	d := sha256.New()
	for _, p := range parts {
		d.Write(p)
	}
	var out [32]byte
	d.Sum(out[:0])
	return out
}

func (s *symmetricState) mixHash(data []byte) { s.h = hash(s.h[:], data) }

// kdf is HKDF-SHA256 with salt ck, input key material ikm, empty info, and n×32
// bytes of output.
func kdf(ck []byte, ikm []byte, n int) [][32]byte {
	out, err := hkdf.Key(sha256.New, ikm, ck, "", 32*n)
	if err != nil {
		panic("handshake: hkdf: " + err.Error()) // only for lengths > 255*32
	}
	keys := make([][32]byte, n)
	for i := range keys {
		copy(keys[i][:], out[32*i:])
	}
	return keys
}

// mixKey mixes a shared secret into ck.
func (s *symmetricState) mixKey(ikm []byte) {
	s.ck = kdf(s.ck[:], ikm, 1)[0]
}

// mixKeyAndKey mixes ikm into ck and returns a one-time AEAD key.
func (s *symmetricState) mixKeyAndKey(ikm []byte) [32]byte {
	k := kdf(s.ck[:], ikm, 2)
	s.ck = k[0]
	return k[1]
}

var zeroNonce [chacha20poly1305.NonceSize]byte

// encrypt seals plaintext with a one-time key (so a zero nonce is safe) and the
// transcript as associated data, then mixes the ciphertext into the transcript.
func (s *symmetricState) encrypt(key [32]byte, plaintext []byte) []byte {
	aead, _ := chacha20poly1305.New(key[:])
	ct := aead.Seal(nil, zeroNonce[:], plaintext, s.h[:])
	s.mixHash(ct)
	return ct
}

func (s *symmetricState) decrypt(key [32]byte, ciphertext []byte) ([]byte, error) {
	aead, _ := chacha20poly1305.New(key[:])
	pt, err := aead.Open(nil, zeroNonce[:], ciphertext, s.h[:])
	if err != nil {
		return nil, err
	}
	s.mixHash(ciphertext)
	return pt, nil
}

// split derives the two transport keys from the final chaining key.
func (s *symmetricState) split() (initToResp, respToInit [32]byte) {
	k := kdf(s.ck[:], nil, 2)
	return k[0], k[1]
}
