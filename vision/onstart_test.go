package vision

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// OnStart sees every new worker before its first request (the daemon puts
// it in its memory cgroup there); a failing hook does not stop the worker.
func TestOnStartSeesEachWorkerBeforeItWorks(t *testing.T) {
	var mu sync.Mutex
	var pids []int
	c := newFake(t, "ok", func(cfg *Config) {
		cfg.OnStart = func(pid int) error {
			mu.Lock()
			defer mu.Unlock()
			pids = append(pids, pid)
			return errors.New("no cgroup here")
		}
	})
	pong, err := c.Ping(context.Background())
	if err != nil {
		t.Fatalf("a failing hook stopped the worker: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(pids) != 1 || pids[0] != pong.PID {
		t.Fatalf("hook saw %v, worker is %d", pids, pong.PID)
	}
}
