package keyfile

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"
)

func TestGenerateWritesAPrivateFileOnceAndReadGetsItBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "owner.key")
	pub, err := Generate(path)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode().Perm())
	}
	if _, err := Generate(path); err == nil {
		t.Fatal("an existing key was overwritten")
	}
	priv, err := Read(path)
	if err != nil || !priv.Public().(ed25519.PublicKey).Equal(pub) {
		t.Fatalf("read back: %v", err)
	}
	os.WriteFile(path+".bad", []byte("not base64!"), 0o600)
	if _, err := Read(path + ".bad"); err == nil {
		t.Fatal("garbage read as a key")
	}
}
