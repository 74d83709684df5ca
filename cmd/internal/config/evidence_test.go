package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/evidence"
)

// The evidence key fails closed: a process reachable beyond loopback needs a
// configured key; a local one generates it once into the data dir and reuses it.
func TestEvidenceKeyFailsClosed(t *testing.T) {
	dir := t.TempDir()
	prod := Common{AdminAddr: "0.0.0.0:8081", DataDir: dir}
	if _, _, err := prod.EvidenceKey(false); err == nil || !strings.Contains(err.Error(), "JML_EVIDENCE_SIGNING_KEY") {
		t.Fatalf("a production worker without a key must not start: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, EvidenceKeyFile)); !os.IsNotExist(err) {
		t.Fatal("a production worker must not generate a key")
	}
	local := Common{AdminAddr: "127.0.0.1:8081", DataDir: dir}
	k1, src, err := local.EvidenceKey(false)
	if err != nil || !strings.Contains(src, "generated") {
		t.Fatalf("local: %v %s", err, src)
	}
	st, err := os.Stat(filepath.Join(dir, EvidenceKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	k2, _, err := local.EvidenceKey(false)
	if err != nil || !k1.Equal(k2) {
		t.Fatal("the generated key must be reused")
	}
	// `jml run` generates even on a non-loopback admin address.
	if _, _, err := (Common{AdminAddr: "0.0.0.0:8081", DataDir: dir}).EvidenceKey(true); err != nil {
		t.Fatal(err)
	}
	conf := Common{AdminAddr: "0.0.0.0:8081", DataDir: t.TempDir(), EvidenceSigningKey: evidence.EncodePrivateKey(k1)}
	k3, src, err := conf.EvidenceKey(false)
	if err != nil || src != "configured" || !k3.Equal(k1) {
		t.Fatalf("configured: %v %s", err, src)
	}
	conf.EvidenceSigningKey = "not a key"
	if _, _, err := conf.EvidenceKey(false); err == nil {
		t.Fatal("a bad key must be refused")
	}
}

func TestEvidenceKeyFromPEM(t *testing.T) {
	// openssl genpkey -algorithm ed25519 (PKCS #8).
	const pemKey = `-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIFsI8tdKHLq9DGj3j1OaRbUMY3wUjAqFIWzBKEL1fQGF
-----END PRIVATE KEY-----`
	k, src, err := (Common{AdminAddr: "0.0.0.0:8081", EvidenceSigningKey: pemKey}).EvidenceKey(false)
	if err != nil || src != "configured" || len(k) != 64 {
		t.Fatalf("PEM key: %v", err)
	}
}
