package powerloss

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func mountForTest(t *testing.T, backing string, crashAt int64) (*LazyFS, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("LazyFS mounts with mount(2): needs root")
	}
	mnt := t.TempDir()
	lz, err := Mount(backing, mnt, crashAt, nil)
	if err != nil {
		t.Skipf("cannot mount FUSE here: %v", err)
	}
	t.Cleanup(func() { lz.Unmount() })
	return lz, mnt
}

// TestLazyFSLosesWhatWasNotSynced: the model itself.
func TestLazyFSLosesWhatWasNotSynced(t *testing.T) {
	backing := t.TempDir()
	lz, mnt := mountForTest(t, backing, 0)
	synced := filepath.Join(mnt, "synced")
	f, _ := os.Create(synced)
	f.Write([]byte("kept"))
	f.Sync()
	f.WriteAt([]byte("LOST"), 0) // after the sync: lost
	if b, _ := os.ReadFile(synced); string(b) != "LOST" {
		t.Fatalf("read through the mount: %q (unsynced writes must be visible)", b)
	}
	f.Close()
	os.WriteFile(filepath.Join(mnt, "unsynced"), []byte("gone"), 0o600)
	lz.Unmount()
	if b, _ := os.ReadFile(filepath.Join(backing, "synced")); string(b) != "kept" {
		t.Fatalf("synced file after power loss: %q", b)
	}
	if b, err := os.ReadFile(filepath.Join(backing, "unsynced")); err != nil || len(b) != 0 {
		t.Fatalf("unsynced file after power loss: %q %v (created, but empty)", b, err)
	}
}

// TestBboltOnLazyFSSurvivesPowerLoss: bbolt runs on the mount (mmap,
// flock, fdatasync) and what it committed survives a cut.
func TestBboltOnLazyFSSurvivesPowerLoss(t *testing.T) {
	backing := t.TempDir()
	lz, mnt := mountForTest(t, backing, 0)
	db, err := bolt.Open(filepath.Join(mnt, "x.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		db.Update(func(tx *bolt.Tx) error {
			b, _ := tx.CreateBucketIfNotExists([]byte("b"))
			return b.Put([]byte{byte(i)}, make([]byte, 3000))
		})
	}
	db.Close()
	lz.Unmount()
	db, err = bolt.Open(filepath.Join(backing, "x.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket([]byte("b")).Stats().KeyN; n != 50 {
			t.Errorf("%d keys after the cut, want 50", n)
		}
		for err := range tx.Check() {
			t.Error(err)
		}
		return nil
	})
}
