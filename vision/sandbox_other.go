//go:build !linux

package vision

// LauncherArg is recognised on Linux only; elsewhere the worker runs
// unconfined (development machines).
const LauncherArg = "__aibo-vision-launcher"

// Sandbox is what the worker may read; unused off Linux.
type Sandbox struct {
	Read []string `json:"read"`
}

// SystemReadPaths is empty off Linux.
var SystemReadPaths []string

// RunLauncher does nothing off Linux.
func RunLauncher() {}

// LandlockABI is 0 off Linux.
func LandlockABI() int { return 0 }

func launcherCommand(launcher string, sb Sandbox, path string, args []string) (string, []string) {
	return path, args
}
