package keys

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestKeyringSlotsPersistAndErasedSlotsAreZeroOnDisk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "people.keys")
	r, err := OpenKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	s0, k0, err := r.Alloc()
	if err != nil {
		t.Fatal(err)
	}
	s1, k1, _ := r.Alloc()
	if s0 == s1 || bytes.Equal(k0, k1) {
		t.Fatalf("two allocations gave slot %d and %d", s0, s1)
	}
	if err := r.Erase(s0); err != nil {
		t.Fatal(err)
	}
	r.Close()

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, k0) || !bytes.Contains(raw, k1) {
		t.Fatal("the erased key is on disk, or the kept one is not")
	}
	r, err = OpenKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Get(s0); !errors.Is(err, ErrNoSlot) {
		t.Fatalf("erased slot after reopening: %v", err)
	}
	if got, err := r.Get(s1); err != nil || !bytes.Equal(got, k1) {
		t.Fatalf("kept slot after reopening: %x %v", got, err)
	}
	if s, _, _ := r.Alloc(); s != s0 {
		t.Fatalf("new key went to slot %d, want the freed slot %d", s, s0)
	}
	if _, err := r.Get(99); !errors.Is(err, ErrNoSlot) {
		t.Fatalf("slot out of range: %v", err)
	}
}

func TestKeyringRefusesAnOpenMode(t *testing.T) {
	open := filepath.Join(t.TempDir(), "open.keys")
	os.WriteFile(open, make([]byte, Size), 0o644)
	if _, err := OpenKeyring(open); err == nil {
		t.Fatal("a keyring readable by others was used")
	}
}

// A power cut in the middle of appending a slot leaves a partial one: the
// daemon must still start, with every complete slot intact.
func TestKeyringCutsAPartialSlotAPowerCutLeft(t *testing.T) {
	path := filepath.Join(t.TempDir(), "people.keys")
	kept := New()
	os.WriteFile(path, append(bytes.Clone(kept), New()[:5]...), 0o600)
	r, err := OpenKeyring(path)
	if err != nil {
		t.Fatalf("torn keyring: %v", err)
	}
	defer r.Close()
	if got, err := r.Get(0); err != nil || !bytes.Equal(got, kept) {
		t.Fatalf("complete slot: %x %v", got, err)
	}
	if st, _ := os.Stat(path); st.Size() != Size {
		t.Fatalf("file of %d bytes after the repair, want %d", st.Size(), Size)
	}
	if s, _, err := r.Alloc(); err != nil || s != 1 {
		t.Fatalf("next slot %d, %v; want 1", s, err)
	}
}
