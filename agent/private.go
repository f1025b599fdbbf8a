package agent

import (
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/aibo-privacy/aibo-privacyd/internal/fsx"
)

// makePrivate checks what data_dir already holds before anything opens it:
// data_dir, state.db and the photo vault must be this process's and
// private. Loose modes (a restored backup, a hand-made directory) are
// tightened and logged; a symlink or another owner is refused (exit 1).
// MkdirAll and bbolt keep an existing mode, so nobody checked it before.
func makePrivate(dataDir string, log *slog.Logger) error {
	for _, p := range []struct {
		path string
		dir  bool
	}{{dataDir, true}, {filepath.Join(dataDir, "state.db"), false}, {filepath.Join(dataDir, "photos"), true}} {
		tightened, err := fsx.Private(p.path, p.dir)
		if err != nil {
			return fmt.Errorf("data_dir: %w", err)
		}
		if tightened {
			log.Warn("permissions tightened: group and others could reach it", "path", p.path)
		}
	}
	return nil
}
