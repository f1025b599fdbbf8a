//go:build !linux

package vision

import (
	"encoding/json"
	"errors"
	"os"
)

// LauncherArg is recognised on Linux only; elsewhere the launcher refuses
// (no Landlock), so no worker runs confined off Linux.
const LauncherArg = "__aibo-vision-launcher"

// Sandbox is what the worker may read; unused off Linux.
type Sandbox struct {
	Read []string `json:"read"`
}

// SystemReadPaths is empty off Linux.
var SystemReadPaths []string

// ErrNoLandlock: there is no Landlock off Linux.
var ErrNoLandlock = errors.New("no Landlock off Linux: the worker's files cannot be confined, so no worker runs")

// RunLauncher refuses off Linux: it reports ErrNoLandlock and exits.
func RunLauncher() {
	if len(os.Args) < 2 || os.Args[1] != LauncherArg {
		return
	}
	if f := os.NewFile(reportFD, "confinement-report"); f != nil {
		json.NewEncoder(f).Encode(launchReport{Refused: ErrNoLandlock.Error()})
		f.Close()
	}
	os.Exit(126)
}

// LandlockABI is 0 off Linux.
func LandlockABI() int { return 0 }
