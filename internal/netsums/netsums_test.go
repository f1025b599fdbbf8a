package netsums

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// folder writes a small stand-in for each model and a SHA256SUMS that
// lists them.
func folder(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	var sums strings.Builder
	for i, f := range Files {
		data := []byte(strings.Repeat(f, i+2))
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(data)
		sums.WriteString(hex.EncodeToString(h[:]) + "  " + f + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, SumsFile), []byte(sums.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestVerifyFindsEveryWayAFolderBreaks(t *testing.T) {
	if err := Verify(folder(t)); err != nil {
		t.Fatalf("a good folder: %v", err)
	}
	for name, spoil := range map[string]func(dir string) error{
		"a model missing":   func(dir string) error { return os.Remove(filepath.Join(dir, DescriptorFile)) },
		"a model truncated": func(dir string) error { return os.Truncate(filepath.Join(dir, DetectorFile), 3) },
		"a model emptied":   func(dir string) error { return os.Truncate(filepath.Join(dir, LandmarksFile), 0) },
		"a model replaced": func(dir string) error {
			return os.WriteFile(filepath.Join(dir, ExpressionsFile), []byte("other"), 0o644)
		},
		"the list missing":   func(dir string) error { return os.Remove(filepath.Join(dir, SumsFile)) },
		"the list garbled":   func(dir string) error { return os.WriteFile(filepath.Join(dir, SumsFile), []byte("nonsense\n"), 0o644) },
		"a model not listed": func(dir string) error { return os.WriteFile(filepath.Join(dir, SumsFile), nil, 0o644) },
		"the whole folder":   os.RemoveAll,
		"a folder for a file": func(dir string) error {
			os.Remove(filepath.Join(dir, DetectorFile))
			return os.Mkdir(filepath.Join(dir, DetectorFile), 0o755)
		},
	} {
		dir := folder(t)
		if err := spoil(dir); err != nil {
			t.Fatal(err)
		}
		if err := Verify(dir); !errors.Is(err, ErrModels) {
			t.Errorf("%s: Verify = %v, want ErrModels", name, err)
		}
	}
}

// A Verify that passed holds while the fingerprint stays the same: any
// write, replacement or removal changes it.
func TestFingerprintChangesWithEveryWrite(t *testing.T) {
	dir := folder(t)
	p := filepath.Join(dir, DescriptorFile)
	// As a model installed a while ago (a file rewritten within the same
	// tick of the file system's clock keeps its times).
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	before, err := Fingerprint(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := Fingerprint(dir); again != before {
		t.Fatal("fingerprint differs without a change")
	}
	data, _ := os.ReadFile(p)
	data[0] ^= 1 // same size
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if after, _ := Fingerprint(dir); after == before {
		t.Error("a model rewritten in place left the fingerprint unchanged")
	}
	os.Remove(filepath.Join(dir, SumsFile))
	if _, err := Fingerprint(dir); !errors.Is(err, ErrModels) {
		t.Errorf("without the list: %v, want ErrModels", err)
	}
}

// The cost of health's look at the face nets (make setup converts them
// into build/models): a Fingerprint every 2 s, a Verify when it changed.
//
//	go test -run '^$' -bench . -benchtime 20x ./internal/netsums/
func BenchmarkFaceNets(b *testing.B) {
	dir := "../../build/models"
	if _, err := os.Stat(filepath.Join(dir, SumsFile)); err != nil {
		b.Fatalf("%v: run make setup", err)
	}
	b.Run("Fingerprint", func(b *testing.B) {
		for b.Loop() {
			if _, err := Fingerprint(dir); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Verify", func(b *testing.B) {
		for b.Loop() {
			if err := Verify(dir); err != nil {
				b.Fatal(err)
			}
		}
	})
}
