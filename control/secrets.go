package control

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/x0tta6bl4/x0t/identity"
)

// Files in the data directory besides the database.
const (
	FileSecretKey     = "secret.key"     // 0600: encrypts mesh CA keys at rest
	FileCheckpointKey = "checkpoint.key" // 0600: signs audit checkpoints
	FileAdminKey      = "admin.key"      // 0600: the first owner's API key
	FileTLSCert       = "tls.crt"
	FileTLSKey        = "tls.key" // 0600
)

// sealer encrypts mesh CA private keys with AES-256-GCM under a key kept in
// the data directory, not in the database. The database is what gets copied
// around (backups, replicas, a PostgreSQL server run by someone else) and the
// audit log shows entity states; a copy of it alone must not let anyone issue
// node certificates for a mesh. Each ciphertext is bound to its mesh ID, so
// one mesh's key can not be swapped into another's record.
type sealer struct{ aead cipher.AEAD }

func loadSealer(dir string) (*sealer, error) {
	key, err := loadOrCreateHexKey(filepath.Join(dir, FileSecretKey), 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("control: secret key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("control: secret key: %w", err)
	}
	return &sealer{aead}, nil
}

func (s *sealer) seal(plain []byte, meshID string) []byte {
	nonce := make([]byte, s.aead.NonceSize())
	rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, plain, []byte("x0t-ca-key-v1\x00"+meshID))
}

func (s *sealer) open(sealed []byte, meshID string) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("control: sealed CA key too short")
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte("x0t-ca-key-v1\x00"+meshID))
	if err != nil {
		return nil, fmt.Errorf("control: CA key of mesh %s does not decrypt (wrong %s?): %w", meshID, FileSecretKey, err)
	}
	return plain, nil
}

// loadOrCreateHexKey reads a hex-encoded random key, creating it on first use.
func loadOrCreateHexKey(path string, size int) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key := make([]byte, size)
		rand.Read(key)
		if err := identity.WriteFile(path, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
			return nil, err
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(key) != size {
		return nil, fmt.Errorf("control: %s: want %d hex-encoded bytes", path, size)
	}
	return key, nil
}

// loadCheckpointKey reads the hybrid key that signs audit checkpoints,
// creating it on first start.
func loadCheckpointKey(dir string) (*identity.SigningKey, error) {
	path := filepath.Join(dir, FileCheckpointKey)
	k, err := identity.ReadCAKey(path)
	if err == nil {
		return k, nil
	}
	if _, statErr := os.Stat(path); !errors.Is(statErr, os.ErrNotExist) {
		return nil, err
	}
	k, err = identity.GenerateSigningKey()
	if err != nil {
		return nil, err
	}
	if err := identity.WriteFile(path, identity.EncodePEM(identity.PEMCAKey, identity.MarshalCAKey(k)), 0o600); err != nil {
		return nil, err
	}
	return k, nil
}
