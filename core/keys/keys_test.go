package keys

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestDeviceKeyIsCreatedPrivateAndReused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "device.key")
	k1, err := LoadOrCreateDeviceKey(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("device key mode %v, want 0600", st.Mode().Perm())
	}
	k2, err := LoadOrCreateDeviceKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k1, k2) {
		t.Fatal("device key changed across loads: everything sealed before would be lost")
	}
}

func TestDeviceKeyRefusesBadMaterial(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short.key")
	os.WriteFile(short, []byte("too short"), 0o600)
	if _, err := LoadOrCreateDeviceKey(short); err == nil {
		t.Error("short key accepted")
	}
	open := filepath.Join(dir, "open.key")
	os.WriteFile(open, New(), 0o644)
	if _, err := LoadOrCreateDeviceKey(open); err == nil {
		t.Error("world-readable key accepted")
	}
}

func TestSealBindsKeyAndRecord(t *testing.T) {
	k := New()
	msg := []byte("a photo's bytes")
	sealed, err := Seal(k, msg, []byte("photo-1"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, msg) {
		t.Fatal("plaintext visible in sealed bytes")
	}
	got, err := Open(k, sealed, []byte("photo-1"))
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("round trip: %v", err)
	}
	if _, err := Open(New(), sealed, []byte("photo-1")); !errors.Is(err, ErrOpen) {
		t.Error("opened with another key")
	}
	if _, err := Open(k, sealed, []byte("photo-2")); !errors.Is(err, ErrOpen) {
		t.Error("opened as another record")
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := Open(k, sealed, []byte("photo-1")); !errors.Is(err, ErrOpen) {
		t.Error("tampered bytes opened")
	}
}
