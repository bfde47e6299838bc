package testutil

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strconv"
	"strings"
)

// Secrets collects what must never appear in logs, with every encoding a log
// line could plausibly carry it in, so a test can grep captured logs for any of
// them. Byte secrets (private keys, seeds) are cut into overlapping windows,
// so a partial dump or a dump of a larger buffer holding the key is caught
// too, whatever its offset.
type Secrets struct {
	needles map[string]string // needle -> description of the secret
}

// byteWindow is the length of the byte windows. 12 random bytes do not
// occur by chance in a log; 15 is a multiple of 3, so the base64 of a window
// is 20 characters that do not depend on what surrounds it.
const (
	byteWindow = 12
	b64Window  = 15
	// strWindow is the length of the windows of a string secret's random
	// part: 16 base32 characters are 80 random bits.
	strWindow = 16
)

// NewSecrets returns an empty set.
func NewSecrets() *Secrets { return &Secrets{needles: map[string]string{}} }

func (s *Secrets) add(needle, what string) {
	if _, ok := s.needles[needle]; !ok {
		s.needles[needle] = what
	}
}

// String adds a textual secret (a join token, an API key). public is the
// leading part that may be shown (the "x0t_join_abc123" a listing displays);
// the rest is looked for whole and in windows.
func (s *Secrets) String(what, secret string, public int) {
	if secret == "" {
		return
	}
	s.add(secret, what)
	hidden := secret[min(public, len(secret)):]
	if len(hidden) <= strWindow {
		s.add(hidden, what+" (unshown part)")
		return
	}
	for i := 0; i+strWindow <= len(hidden); i++ {
		s.add(hidden[i:i+strWindow], what+" (part)")
	}
}

// Bytes adds binary secret material (a private key or seed), looked for in
// hex (either case), base64 (standard and URL alphabets), Go's %v of a byte
// slice and a quoted string, in windows at every offset.
func (s *Secrets) Bytes(what string, b []byte) {
	for i := 0; i+byteWindow <= len(b); i++ {
		w := b[i : i+byteWindow]
		s.add(hex.EncodeToString(w), what+" (hex)")
		s.add(strings.ToUpper(hex.EncodeToString(w)), what+" (HEX)")
		s.add(strings.Trim(fmt.Sprint(w), "[]"), what+" (%v)")
		if q := strconv.Quote(string(w)); len(q) > 2 {
			s.add(q[1:len(q)-1], what+" (quoted)")
		}
		if i+b64Window <= len(b) {
			s.add(base64.StdEncoding.EncodeToString(b[i:i+b64Window]), what+" (base64)")
			s.add(base64.URLEncoding.EncodeToString(b[i:i+b64Window]), what+" (base64url)")
		}
	}
	if len(b) < byteWindow { // short secrets whole
		s.add(hex.EncodeToString(b), what+" (hex)")
		s.add(base64.StdEncoding.EncodeToString(b), what+" (base64)")
	}
}

// File adds the content of a secret file: the text as written, and the bytes
// inside it when it is PEM or hex, the two forms x0t writes keys in.
func (s *Secrets) File(what string, data []byte) {
	text := strings.TrimSpace(string(data))
	if block, _ := pem.Decode(data); block != nil {
		s.Bytes(what, block.Bytes)
		for _, line := range strings.Split(text, "\n") {
			if line = strings.TrimSpace(line); len(line) >= 20 && !strings.HasPrefix(line, "-----") {
				s.add(line, what+" (PEM line)")
			}
		}
		return
	}
	if raw, err := hex.DecodeString(text); err == nil && len(raw) > 0 {
		s.Bytes(what, raw)
		s.add(text, what)
		return
	}
	s.String(what, text, 0)
}

// Len is the number of needles, for a test to show it looked for something.
func (s *Secrets) Len() int { return len(s.needles) }

// Find returns a description of every secret found in text, with where.
func (s *Secrets) Find(text string) []string {
	var out []string
	seen := map[string]bool{}
	for needle, what := range s.needles {
		i := strings.Index(text, needle)
		if i < 0 || seen[what] {
			continue
		}
		seen[what] = true
		start, end := max(0, i-60), min(len(text), i+len(needle)+60)
		out = append(out, fmt.Sprintf("%s in %q", what, text[start:end]))
	}
	return out
}
