// Package agent runs a node enrolled with a control plane: it generates the
// node's keys locally (private keys never leave the node), enrolls with a join
// token, waits for approval, keeps its identity in a state directory so that a
// restart rejoins without the token, follows the signed netmap stream, sends
// heartbeats and renews its certificate before it expires.
package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/x0tta6bl4/x0t/identity"
)

// Files in the state directory.
const (
	fileKey   = "node.key"   // 0600
	fileCert  = "node.crt"   // once approved
	fileCA    = "ca.crt"     // the mesh CA
	fileState = "state.json" // control URL, name, node ID
)

// State is what the agent keeps between runs.
type State struct {
	Control     string `json:"control"`
	Fingerprint string `json:"control_fingerprint,omitempty"`
	Name        string `json:"name"`
	NodeID      string `json:"node_id"`
	Mesh        string `json:"mesh,omitempty"`

	dir  string
	Key  *identity.NodeKey     `json:"-"`
	Cert *identity.Certificate `json:"-"` // nil until approved
	CA   *identity.Certificate `json:"-"` // nil until the first answer
}

// ErrNoState means the directory holds no node identity yet.
var ErrNoState = errors.New("agent: no node state")

// LoadState reads a state directory.
func LoadState(dir string) (*State, error) {
	data, err := os.ReadFile(filepath.Join(dir, fileState))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoState
	}
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	s := &State{dir: dir}
	if err := json.Unmarshal(data, s); err != nil {
		return nil, fmt.Errorf("agent: %s: %w", filepath.Join(dir, fileState), err)
	}
	if s.Key, err = identity.ReadNodeKey(filepath.Join(dir, fileKey)); err != nil {
		return nil, err
	}
	if s.Key.PublicKeys().ID().String() != s.NodeID {
		return nil, fmt.Errorf("agent: %s does not hold the key of node %s", dir, s.NodeID)
	}
	for _, f := range []struct {
		name string
		dst  **identity.Certificate
	}{{fileCert, &s.Cert}, {fileCA, &s.CA}} {
		c, err := identity.ReadCertificate(filepath.Join(dir, f.name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		*f.dst = c
	}
	if s.Cert != nil && s.Cert.ID() != s.Key.PublicKeys().ID() {
		return nil, fmt.Errorf("agent: %s: certificate is not for this node's key", dir)
	}
	return s, nil
}

// NewState makes a fresh identity in dir (which must not hold one).
func NewState(dir, control, fingerprint, name string) (*State, error) {
	if _, err := os.Stat(filepath.Join(dir, fileKey)); err == nil {
		return nil, fmt.Errorf("agent: %s already holds a node key", dir)
	}
	key, err := identity.GenerateNodeKey()
	if err != nil {
		return nil, err
	}
	s := &State{dir: dir, Control: control, Fingerprint: fingerprint, Name: name,
		NodeID: key.PublicKeys().ID().String(), Key: key}
	kb, _ := key.MarshalBinary()
	if err := identity.WriteFile(filepath.Join(dir, fileKey), identity.EncodePEM(identity.PEMNodeKey, kb), 0o600); err != nil {
		return nil, err
	}
	return s, s.Save()
}

// Save writes the state file and the certificates.
func (s *State) Save() error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := identity.WriteFile(filepath.Join(s.dir, fileState), append(data, '\n'), 0o600); err != nil {
		return err
	}
	if s.CA != nil {
		if err := identity.WriteFile(filepath.Join(s.dir, fileCA), identity.EncodePEM(identity.PEMCertificate, s.CA.Bytes()), 0o644); err != nil {
			return err
		}
	}
	if s.Cert != nil {
		if err := identity.WriteFile(filepath.Join(s.dir, fileCert), identity.EncodePEM(identity.PEMCertificate, s.Cert.Bytes()), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Dir returns the state directory.
func (s *State) Dir() string { return s.dir }
