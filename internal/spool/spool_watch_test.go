package spool

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestImageNames(t *testing.T) {
	for name, want := range map[string]bool{
		"a.jpg": true, "b.JPEG": true, "c.Png": true, "d.jpeg": true,
		".hidden.jpg": false, "e.jpg.part": false, "f.gif": false, "g": false, "tmp-1234": false,
	} {
		if Image(name) != want {
			t.Errorf("Image(%q) = %v", name, !want)
		}
	}
}

// handled records each name the watcher hands over, and removes the file
// as the intake does (or leaves it, to be retried).
type handled struct {
	mu      sync.Mutex
	count   map[string]int
	keep    map[string]bool // left in place: the handler will be called again
	active  atomic.Int32
	maxSeen atomic.Int32
	dir     string
}

func (h *handled) handle(name string) {
	n := h.active.Add(1)
	for {
		m := h.maxSeen.Load()
		if n <= m || h.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(5 * time.Millisecond)
	h.mu.Lock()
	h.count[name]++
	keep := h.keep[name]
	h.mu.Unlock()
	if !keep {
		os.Remove(filepath.Join(h.dir, name))
	}
	h.active.Add(-1)
}

func (h *handled) times(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.count[name]
}

func run(t *testing.T, w *Watcher) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 3 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Contract section 2: every file the camera finishes (renames to an image
// name) is handed over once, whether it was there at start or arrives
// later; the camera's temporary names are left alone.
func TestWatcherHandsEachFinishedFileOnce(t *testing.T) {
	dir := t.TempDir()
	h := &handled{count: map[string]int{}, keep: map[string]bool{}, dir: dir}
	os.WriteFile(filepath.Join(dir, "before.jpg"), []byte("x"), 0o644)
	w := &Watcher{Dir: dir, Owned: Image, Handle: h.handle, Workers: 2, Rescan: 50 * time.Millisecond}
	run(t, w)
	for i := range 20 {
		tmp := filepath.Join(dir, "cam-"+string(rune('a'+i))+".part")
		os.WriteFile(tmp, []byte("partial"), 0o644)
		os.Rename(tmp, filepath.Join(dir, "p"+string(rune('a'+i))+".jpg"))
	}
	os.WriteFile(filepath.Join(dir, "still-writing.part"), []byte("x"), 0o644)
	waitUntil(t, "all 21 handled", func() bool {
		n := 0
		for i := range 20 {
			n += h.times("p" + string(rune('a'+i)) + ".jpg")
		}
		return n+h.times("before.jpg") == 21
	})
	time.Sleep(200 * time.Millisecond) // a few rescans: nothing twice
	for i := range 20 {
		if n := h.times("p" + string(rune('a'+i)) + ".jpg"); n != 1 {
			t.Errorf("p%c.jpg handled %d times", 'a'+i, n)
		}
	}
	if h.times("still-writing.part") != 0 {
		t.Error("a temporary name was handed over")
	}
	if _, err := os.Stat(filepath.Join(dir, "still-writing.part")); err != nil {
		t.Error("the camera's temporary file was touched")
	}
	if m := h.maxSeen.Load(); m > 2 {
		t.Errorf("%d handlers at once, Workers is 2", m)
	}
}

// A file the handler leaves in place (the disk was full, say) is handed
// over again at the next rescan, never twice at the same time.
func TestWatcherRetriesWhatTheHandlerLeaves(t *testing.T) {
	dir := t.TempDir()
	h := &handled{count: map[string]int{}, keep: map[string]bool{"stuck.jpg": true}, dir: dir}
	os.WriteFile(filepath.Join(dir, "stuck.jpg"), []byte("x"), 0o644)
	w := &Watcher{Dir: dir, Owned: Image, Handle: h.handle, Workers: 4, Rescan: 20 * time.Millisecond}
	run(t, w)
	waitUntil(t, "three attempts", func() bool { return h.times("stuck.jpg") >= 3 })
	if m := h.maxSeen.Load(); m > 1 {
		t.Errorf("one name handled %d times at once", m)
	}
}

func TestReadRegularRefusesWhatIsNotAPlainFile(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain.jpg")
	os.WriteFile(plain, []byte("0123456789"), 0o644)
	if b, err := ReadRegular(plain, nil, 10); err != nil || string(b) != "0123456789" {
		t.Fatalf("plain file: %q %v", b, err)
	}
	if _, err := ReadRegular(plain, nil, 9); !errors.Is(err, ErrTooLarge) {
		t.Errorf("over the bound: %v", err)
	}
	link := filepath.Join(dir, "link.jpg")
	os.Symlink(plain, link)
	if _, err := ReadRegular(link, nil, 100); !errors.Is(err, ErrNotRegular) {
		t.Errorf("symlink: %v", err)
	}
	fifo := filepath.Join(dir, "fifo.jpg")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadRegular(fifo, nil, 100); !errors.Is(err, ErrNotRegular) { // and it does not block
		t.Errorf("fifo: %v", err)
	}
	seen, _ := os.Stat(plain)
	other := filepath.Join(dir, "other")
	os.WriteFile(other, []byte("replaced"), 0o644) // a new inode while the old one lives
	os.Rename(other, plain)
	if _, err := ReadRegular(plain, seen, 100); !errors.Is(err, ErrNotRegular) {
		t.Errorf("a file replaced since it was seen: %v", err)
	}
}
