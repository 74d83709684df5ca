package config

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sentry-jml/sentry-jml/internal/evidence"
)

// EvidenceKeyFile is the signing key `jml run` (or a worker whose admin API
// is loopback-only) generates into the data dir when none is configured.
const EvidenceKeyFile = "evidence-signing.key"

// EvidenceKey is the evidence signing key and where it came from (never the
// key itself): JML_EVIDENCE_SIGNING_KEY (or the file JML_EVIDENCE_SIGNING_KEY_FILE
// names), a base64 ed25519 seed or a PKCS #8 PEM key. Unset, a local setup
// (generate true: `jml run`, or a loopback admin API) uses the data dir's
// key, created on first use; any other process fails to start: anchoring is
// what makes a rewritten history detectable, so it is never silently off.
func (c Common) EvidenceKey(generate bool) (ed25519.PrivateKey, string, error) {
	if s := strings.TrimSpace(c.EvidenceSigningKey); s != "" {
		k, err := evidence.ParsePrivateKey(s)
		if err != nil {
			return nil, "", fmt.Errorf("config: JML_EVIDENCE_SIGNING_KEY: %w", err)
		}
		return k, "configured", nil
	}
	if !generate && !IsLoopbackAddr(c.AdminAddr) {
		return nil, "", errors.New("config: JML_EVIDENCE_SIGNING_KEY (or JML_EVIDENCE_SIGNING_KEY_FILE) is required: the evidence chain's head is signed with it " +
			"(generate one: openssl genpkey -algorithm ed25519 -out evidence_signing_key; see docs/evidence.md)")
	}
	path := filepath.Join(c.DataDir, EvidenceKeyFile)
	if b, err := os.ReadFile(path); err == nil {
		k, err := evidence.ParsePrivateKey(string(b))
		if err != nil {
			return nil, "", fmt.Errorf("config: %s: %w", path, err)
		}
		return k, path, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, "", fmt.Errorf("config: %s: %w", path, err)
	}
	k, err := evidence.GenerateKey()
	if err != nil {
		return nil, "", err
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return nil, "", fmt.Errorf("config: data dir: %w", err)
	}
	if err := createExclusive(path, []byte(evidence.EncodePrivateKey(k)+"\n")); err != nil {
		if errors.Is(err, os.ErrExist) { // another process won the race: use its key
			return c.EvidenceKey(generate)
		}
		return nil, "", fmt.Errorf("config: %s: %w", path, err)
	}
	return k, path + " (generated)", nil
}
