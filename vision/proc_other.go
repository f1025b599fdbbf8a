//go:build !linux

package vision

import "os/exec"

// nsTry has nothing to try outside Linux: no namespaces.
type nsTry struct{ set bool }

func (n nsTry) candidates() []nsTry { return []nsTry{{set: true}} }
func (n nsTry) names() []string     { return nil }

// setProcAttr cannot isolate the worker outside Linux.
func setProcAttr(cmd *exec.Cmd, try nsTry) {}

func killProcess(cmd *exec.Cmd) {
	if cmd.Process != nil {
		cmd.Process.Kill()
	}
}
