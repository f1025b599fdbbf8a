//go:build readme

package readme

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The README's commands, run as written in a fresh clone of this
// checkout's HEAD with nothing beside it, as a new user would (make
// test-readme; as root, for make powerloss and make install-test): the
// first three commands, and the long targets in the short settings the
// README gives. Nothing is substituted: make run runs as written, in the
// background until the end instead of holding a terminal, in a network
// namespace of its own, so its broker's port 18830 is its own and not the
// one of a developer's make run on this machine.
func TestREADMEFromAFreshClone(t *testing.T) {
	blocks := For(t)
	top := filepath.Dir(Path(t))
	if out, _ := exec.Command("git", "-C", top, "status", "--porcelain", "--untracked-files=no").Output(); len(out) > 0 {
		t.Logf("the checkout has uncommitted changes; the clone has HEAD only:\n%s", out)
	}
	clone := filepath.Join(t.TempDir(), "aibo-privacyd")
	if out, err := exec.Command("git", "clone", "--quiet", "--no-hardlinks", top, clone).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	var running *exec.Cmd
	defer func() {
		if running != nil {
			syscall.Kill(-running.Process.Pid, syscall.SIGINT)
			running.Wait()
		}
	}()
	for _, b := range blocks {
		for _, line := range strings.Split(b.Text, "\n") {
			if i := strings.Index(line, "  #"); i >= 0 {
				line = line[:i]
			}
			line = strings.TrimSpace(line)
			if line == "" {
				continue
			}
			start := time.Now()
			log, err := os.Create(filepath.Join(t.TempDir(), "out"))
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("bash", "-c", line)
			if line == "make run" {
				cmd = exec.Command("unshare", "--net", "--", "sh", "-c", "ip link set lo up && exec make run")
			}
			cmd.Dir = clone
			cmd.Stdout, cmd.Stderr = log, log
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if line == "make run" {
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				running = cmd
				sock := filepath.Join(clone, "var/diag.sock")
				for exec.Command(filepath.Join(clone, "bin/aiboctl"), "-socket", sock, "health").Run() != nil {
					if time.Since(start) > 15*time.Minute {
						t.Fatalf("README.md:%d: make run: the daemon never answered:\n%s", b.Line, readTail(log.Name()))
					}
					time.Sleep(time.Second)
				}
				t.Logf("README.md:%d: %s: the daemon answers after %s", b.Line, line, time.Since(start).Round(time.Second))
				continue
			}
			err = cmd.Run()
			t.Logf("README.md:%d: %s: %s, %v", b.Line, line, time.Since(start).Round(time.Second), errOr(err, "ok"))
			if err != nil {
				t.Fatalf("README.md:%d: %s failed: %v\n%s", b.Line, line, err, readTail(log.Name()))
			}
		}
	}
}

func errOr(err error, ok string) any {
	if err != nil {
		return err
	}
	return ok
}

func readTail(file string) string {
	b, _ := os.ReadFile(file)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 60 {
		lines = lines[len(lines)-60:]
	}
	return strings.Join(lines, "\n")
}
