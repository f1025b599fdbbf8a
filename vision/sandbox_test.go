//go:build linux

package vision

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Promise P16: the process that decodes untrusted images cannot read the
// daemon's keys or store, write anywhere, or reach the diagnostic socket,
// whatever an exploit makes it do. The fake worker tries what an exploited
// decoder would; without the sandbox each attempt succeeds (the control),
// through the launcher each one fails.
func TestP16_TheWorkerCannotReadTheDaemonsFilesNorReachItsSocket(t *testing.T) {
	dataDir := t.TempDir()
	key := filepath.Join(dataDir, "device.key")
	if err := os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	sockDir, err := os.MkdirTemp("", "aibo-sandbox")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	sock := filepath.Join(sockDir, "diag.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	reached := make(chan struct{}, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			reached <- struct{}{}
			c.Close()
		}
	}()
	if LandlockABI() == 0 {
		t.Fatal("this kernel has no Landlock: the worker's files are not confined here")
	}
	attempts := []string{"open:" + key, "write:" + filepath.Join(dataDir, "planted"), "connect:" + sock}

	control := newFake(t, "ok", nil)
	for _, a := range attempts {
		if res, err := score(control, a); err != nil || res.Score != 1 {
			t.Fatalf("control, unconfined: %s failed (%v, %v): the test exercises nothing", a, res.Score, err)
		}
	}
	<-reached

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	confined := newFake(t, "ok", func(c *Config) {
		c.Launcher = self
		c.Sandbox = Sandbox{Read: append([]string{self}, SystemReadPaths...)}
	})
	for _, a := range attempts {
		res, err := score(confined, a)
		if err != nil {
			t.Fatalf("%s: the confined worker failed to answer: %v", a, err)
		}
		if res.Score != 0 {
			t.Errorf("the confined worker succeeded: %s", a)
		}
	}
	if conf := confined.Confinement(); !conf.Confined() || conf.Landlock != LandlockABI() {
		t.Errorf("confinement %+v: not what the launcher put in force", conf)
	}
	select {
	case <-reached:
		t.Fatal("the confined worker reached the diagnostic socket")
	case <-time.After(100 * time.Millisecond):
	}
	// And it still works: an ordinary request is answered.
	if res, err := score(confined, "a photo"); err != nil || res.Score != 0.5 {
		t.Fatalf("confined worker: %v %v", res.Score, err)
	}
}
