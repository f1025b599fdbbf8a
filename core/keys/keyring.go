package keys

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
)

// Keyring is a file of fixed-size slots, each holding one key that seals
// another key kept in the store (a person's key in people.keys; a photo's
// or a queued artifact's in data.keys). It exists because the bbolt store
// copies on write: a deleted record's old page stays in the file's free
// list until it happens to be reused, so a key sealed by the device key
// could be read back from it after "erasure". A slot is overwritten in
// place instead: Erase zeroes it and syncs, and every copy of what its key
// sealed, wherever the store or the file system left it, can no longer be
// opened. Alloc reuses the lowest free slot, so the file is as large as
// the most keys ever held at once, not the most ever made.
//
// The file holds nothing but random keys, mode 0600. A zero slot is free.
// Flash translation layers may still keep an old block; that is below
// what a file can promise.
type Keyring struct {
	mu    sync.RWMutex
	f     *os.File
	slots [][]byte // nil: free
}

// ErrNoSlot is returned for a slot that is free or out of range.
var ErrNoSlot = errors.New("keys: keyring slot is empty")

// OpenKeyring opens (creating with mode 0600) the keyring at path. A file
// readable by group or others is refused; a partial slot at the end (an
// append a power cut interrupted) is cut off.
func OpenKeyring(path string) (*Keyring, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
		}
	}()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("keyring %s has mode %v; it must be 0600", path, st.Mode().Perm())
	}
	size := st.Size() - st.Size()%Size
	if size != st.Size() {
		// A power cut during Alloc's append: that slot's grant never
		// committed (the store is written after the slot is synced), so
		// the partial slot seals nothing and is cut off.
		if err := f.Truncate(size); err != nil {
			return nil, fmt.Errorf("keyring: cut a partial slot: %w", err)
		}
		if err := f.Sync(); err != nil {
			return nil, fmt.Errorf("keyring: %w", err)
		}
	}
	raw := make([]byte, size)
	if _, err := f.ReadAt(raw, 0); err != nil && size > 0 {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	k := &Keyring{f: f}
	zero := make([]byte, Size)
	for o := 0; o < len(raw); o += Size {
		s := raw[o : o+Size]
		if bytes.Equal(s, zero) {
			k.slots = append(k.slots, nil)
		} else {
			k.slots = append(k.slots, s)
		}
	}
	ok = true
	return k, nil
}

// Close closes the file.
func (k *Keyring) Close() error { return k.f.Close() }

// Alloc stores a fresh key in the first free slot (or a new one at the
// end), syncs it, and returns the slot and the key.
func (k *Keyring) Alloc() (uint32, []byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	slot := len(k.slots)
	for i, s := range k.slots {
		if s == nil {
			slot = i
			break
		}
	}
	key := New()
	if err := k.write(slot, key); err != nil {
		return 0, nil, err
	}
	if slot == len(k.slots) {
		k.slots = append(k.slots, nil)
	}
	k.slots[slot] = key
	return uint32(slot), bytes.Clone(key), nil
}

// Get returns the key in slot.
func (k *Keyring) Get(slot uint32) ([]byte, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if int(slot) >= len(k.slots) || k.slots[slot] == nil {
		return nil, ErrNoSlot
	}
	return bytes.Clone(k.slots[slot]), nil
}

// Erase zeroes slots on disk and syncs once. Erasing a free slot is a
// no-op.
func (k *Keyring) Erase(slots ...uint32) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	dirty := false
	for _, s := range slots {
		if int(s) >= len(k.slots) || k.slots[s] == nil {
			continue
		}
		if _, err := k.f.WriteAt(make([]byte, Size), int64(s)*Size); err != nil {
			return fmt.Errorf("keyring: erase slot %d: %w", s, err)
		}
		clear(k.slots[s])
		k.slots[s] = nil
		dirty = true
	}
	if !dirty {
		return nil
	}
	if err := k.f.Sync(); err != nil {
		return fmt.Errorf("keyring: sync: %w", err)
	}
	return nil
}

// Scrub erases every occupied slot inUse does not claim, and returns how
// many it erased. Run it where no slot can be allocated concurrently (in
// the store's write transaction that lists the slots in use).
func (k *Keyring) Scrub(inUse func(slot uint32) bool) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for i, s := range k.slots {
		if s != nil && !inUse(uint32(i)) {
			if err := k.erase(i); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// Used is the number of occupied slots.
func (k *Keyring) Used() int {
	k.mu.RLock()
	defer k.mu.RUnlock()
	n := 0
	for _, s := range k.slots {
		if s != nil {
			n++
		}
	}
	return n
}

func (k *Keyring) erase(slot int) error {
	if slot >= len(k.slots) || k.slots[slot] == nil {
		return nil
	}
	if err := k.write(slot, make([]byte, Size)); err != nil {
		return err
	}
	clear(k.slots[slot])
	k.slots[slot] = nil
	return nil
}

// write puts b at slot in place and syncs the file.
func (k *Keyring) write(slot int, b []byte) error {
	if _, err := k.f.WriteAt(b, int64(slot)*Size); err != nil {
		return fmt.Errorf("keyring: write slot %d: %w", slot, err)
	}
	if err := k.f.Sync(); err != nil {
		return fmt.Errorf("keyring: sync: %w", err)
	}
	return nil
}
