package testutil

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// The scan finds a secret however a careless log line would carry it, and
// does not fire on a log that only shows the public part of a token.
func TestSecretsFindsEveryEncoding(t *testing.T) {
	key := make([]byte, 64)
	rand.Read(key)
	token := "x0t_join_" + strings.Repeat("ab3de", 10) + "zz"
	s := NewSecrets()
	s.Bytes("key", key)
	s.String("token", token, len("x0t_join_")+6)
	s.File("pem", pem.EncodeToMemory(&pem.Block{Type: "X0T NODE KEY", Bytes: key[:40]}))
	var buf bytes.Buffer
	text := slog.New(slog.NewTextHandler(&buf, nil))
	js := slog.New(slog.NewJSONHandler(&buf, nil))

	for name, leak := range map[string]func(){
		"text []byte":       func() { text.Info("x", "k", key) },
		"json []byte":       func() { js.Info("x", "k", key) },
		"hex":               func() { text.Info("x", "k", hex.EncodeToString(key)) },
		"HEX":               func() { text.Info("x", "k", fmt.Sprintf("%X", key)) },
		"%v":                func() { text.Info("x", "k", fmt.Sprint(key)) },
		"base64url, offset": func() { text.Info("x", "k", base64.URLEncoding.EncodeToString(append([]byte{1}, key...))) },
		"a slice of it":     func() { js.Info("x", "k", hex.EncodeToString(key[20:34])) },
		"token":             func() { text.Info("x", "err", "bad token "+token) },
		"token, cut":        func() { text.Info("x", "t", token[10:30]) },
		"token in json":     func() { js.Info("x", "t", token) },
	} {
		buf.Reset()
		leak()
		if len(s.Find(buf.String())) == 0 {
			t.Errorf("%s: not found in %s", name, buf.String())
		}
	}
	buf.Reset()
	text.Info("token created", "token", token[:len("x0t_join_")+6], "key_id", "k_123")
	if found := s.Find(buf.String()); len(found) != 0 {
		t.Errorf("the shown prefix counted as a leak: %v", found)
	}
}
