package powerloss

import (
	"os"
	"os/exec"
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

// bboltClientEnv makes the test binary a bbolt client (see TestMain): bbolt
// reads through mmap, and a page fault on a FUSE file served by the same
// process can stall the Go runtime's stop-the-world, so bbolt runs in a
// process of its own, as the daemon does.
const bboltClientEnv = "POWERLOSS_BBOLT_CLIENT"

func bboltClient(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return err
	}
	for i := range 50 {
		err := db.Update(func(tx *bolt.Tx) error {
			b, _ := tx.CreateBucketIfNotExists([]byte("b"))
			return b.Put([]byte{byte(i)}, make([]byte, 3000))
		})
		if err != nil {
			return err
		}
	}
	return db.Close()
}

// TestBboltOnLazyFSSurvivesPowerLoss: bbolt runs on the mount (mmap,
// flock, fdatasync) and what it committed survives a cut.
func TestBboltOnLazyFSSurvivesPowerLoss(t *testing.T) {
	backing := t.TempDir()
	lz, mnt := mountForTest(t, backing, 0)
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), bboltClientEnv+"="+filepath.Join(mnt, "x.db"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bbolt on LazyFS: %v\n%s", err, out)
	}
	lz.Unmount()
	db, err := bolt.Open(filepath.Join(backing, "x.db"), 0o600, &bolt.Options{Timeout: time.Second})
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
