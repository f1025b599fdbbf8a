package vision

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// fakeCgroup records what the client asks of the worker's cgroup.
type fakeCgroup struct {
	mu     sync.Mutex
	placed []int
	kills  int
}

func (f *fakeCgroup) Place(pid int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.placed = append(f.placed, pid)
	return errors.New("no cgroup here")
}

func (f *fakeCgroup) Kill() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kills++
	return nil
}

// The cgroup gets every new worker before its first request (its memory
// bound counts from there), a failing placement does not stop the worker,
// and whatever is left in it is killed once a worker is gone.
func TestTheCgroupHoldsEachWorkerAndIsEmptiedAfterIt(t *testing.T) {
	cg := &fakeCgroup{}
	c := newFake(t, "ok", func(cfg *Config) { cfg.Cgroup = cg })
	if _, err := c.Ping(context.Background()); err != nil {
		t.Fatalf("a failing placement stopped the worker: %v", err)
	}
	pid := c.Stats().PID
	cg.mu.Lock()
	placed, kills := append([]int(nil), cg.placed...), cg.kills
	cg.mu.Unlock()
	if len(placed) != 1 || placed[0] != pid || kills != 0 {
		t.Fatalf("placed %v (worker %d), kills %d", placed, pid, kills)
	}
	c.Close()
	cg.mu.Lock()
	defer cg.mu.Unlock()
	if cg.kills != 1 {
		t.Fatalf("cgroup killed %d times after the worker stopped, want 1", cg.kills)
	}
}
