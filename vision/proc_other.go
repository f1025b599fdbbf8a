//go:build !linux

package vision

import "os/exec"

// setProcAttr cannot isolate the worker outside Linux.
func setProcAttr(cmd *exec.Cmd, isolate bool) {}

func killProcess(cmd *exec.Cmd) {
	if cmd.Process != nil {
		cmd.Process.Kill()
	}
}
