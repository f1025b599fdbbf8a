// Package spool watches a camera drop folder: it hands each complete file
// name to a handler once (fsnotify events, debounced, plus a periodic rescan
// for anything missed), with a bounded number of handlers at a time. It
// never reads or deletes files itself; the handler owns each file.
package spool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Image reports whether name is one the camera finishes with a rename:
// *.jpg, *.jpeg or *.png (any case), not a dot file.
func Image(name string) bool {
	if strings.HasPrefix(name, ".") {
		return false
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".jpg", ".jpeg", ".png":
		return true
	}
	return false
}

// Watcher feeds file names of one directory to a handler.
type Watcher struct {
	Dir     string
	Owned   func(name string) bool // which names are the handler's
	Handle  func(name string)      // called at most once at a time per name
	Workers int                    // handlers at a time (default 1)
	Settle  time.Duration          // quiet time after the last event (default 30 ms)
	Rescan  time.Duration          // periodic listing (default 2 s)
	Logger  *slog.Logger

	mu       sync.Mutex
	timers   map[string]*time.Timer
	inFlight map[string]bool
	work     chan string
	poke     chan struct{}
}

// Poke asks for a listing now rather than at the next Rescan (files that
// waited for something that is back). It never blocks; before Run it
// does nothing.
func (w *Watcher) Poke() {
	w.mu.Lock()
	p := w.poke
	w.mu.Unlock()
	if p == nil {
		return
	}
	select {
	case p <- struct{}{}:
	default:
	}
}

// Run creates the directory if needed and feeds names until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	if w.Workers <= 0 {
		w.Workers = 1
	}
	if w.Settle <= 0 {
		w.Settle = 30 * time.Millisecond
	}
	if w.Rescan <= 0 {
		w.Rescan = 2 * time.Second
	}
	if w.Logger == nil {
		w.Logger = slog.Default()
	}
	w.mu.Lock()
	w.timers, w.inFlight, w.work, w.poke = map[string]*time.Timer{}, map[string]bool{}, make(chan string, 4096), make(chan struct{}, 1)
	w.mu.Unlock()
	if err := os.MkdirAll(w.Dir, 0o770); err != nil {
		return fmt.Errorf("spool %s: %w", w.Dir, err)
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("spool watch: %w", err)
	}
	defer fw.Close()
	if err := fw.Add(w.Dir); err != nil {
		return fmt.Errorf("spool watch %s: %w", w.Dir, err)
	}
	var wg sync.WaitGroup
	for i := 0; i < w.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case name := <-w.work:
					// A rescan may have listed it just before an earlier
					// handler removed it: a name that is gone is done.
					if _, err := os.Lstat(filepath.Join(w.Dir, name)); err == nil {
						w.Handle(name)
					}
					w.mu.Lock()
					delete(w.inFlight, name)
					w.mu.Unlock()
				}
			}
		}()
	}
	defer wg.Wait()
	w.scan()
	tick := time.NewTicker(w.Rescan)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			w.stopTimers()
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return errors.New("spool watch closed")
			}
			if ev.Op&(fsnotify.Create|fsnotify.Write|fsnotify.Rename|fsnotify.Chmod) != 0 {
				w.soon(filepath.Base(ev.Name))
			}
		case err, ok := <-fw.Errors:
			if !ok {
				return errors.New("spool watch closed")
			}
			w.Logger.Warn("spool watch", "dir", w.Dir, "err", err) // an overflow: the rescan catches up
			w.scan()
		case <-tick.C:
			w.scan()
		case <-w.poke:
			w.scan()
		}
	}
}

func (w *Watcher) scan() {
	entries, err := os.ReadDir(w.Dir)
	if err != nil {
		w.Logger.Error("spool scan", "dir", w.Dir, "err", err)
		return
	}
	for _, e := range entries {
		if w.Owned(e.Name()) {
			w.enqueue(e.Name())
		}
	}
}

// soon queues name once it has been quiet for Settle.
func (w *Watcher) soon(name string) {
	if !w.Owned(name) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if t, ok := w.timers[name]; ok {
		t.Reset(w.Settle)
		return
	}
	w.timers[name] = time.AfterFunc(w.Settle, func() {
		w.mu.Lock()
		delete(w.timers, name)
		w.mu.Unlock()
		w.enqueue(name)
	})
}

func (w *Watcher) stopTimers() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for name, t := range w.timers {
		t.Stop()
		delete(w.timers, name)
	}
}

func (w *Watcher) enqueue(name string) {
	w.mu.Lock()
	if w.inFlight[name] {
		w.mu.Unlock()
		return
	}
	w.inFlight[name] = true
	w.mu.Unlock()
	select {
	case w.work <- name:
	default: // queue full: the next rescan picks it up
		w.mu.Lock()
		delete(w.inFlight, name)
		w.mu.Unlock()
	}
}

// Refusals of ReadRegular.
var (
	ErrNotRegular = errors.New("not a regular file")
	ErrTooLarge   = errors.New("file over the size bound")
)

// ReadRegular reads a spool file without following links: a symlink, a
// device, a FIFO or a file replaced since seen (when seen is given) is
// ErrNotRegular, one larger than max is ErrTooLarge. Other errors are
// passing (the file may be read again later).
func ReadRegular(path string, seen os.FileInfo, max int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, ErrNotRegular
		}
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || (seen != nil && !os.SameFile(fi, seen)) {
		return nil, ErrNotRegular
	}
	if fi.Size() > max {
		return nil, fmt.Errorf("%w: %d bytes is over %d", ErrTooLarge, fi.Size(), max)
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, ErrTooLarge
	}
	return data, nil
}
