// Package keys owns encryption at rest: the device key file, keyrings of
// erasable key slots, random data keys, and AES-256-GCM sealing. Personal
// data is sealed with its own key (per photo, per artifact, per person),
// and that key is sealed by a key in a Keyring slot, which is overwritten
// in place when the data is deleted: every copy of what it sealed, in a
// freed page or an old file block, then opens with no key left on the
// device. The device key only opens what older versions sealed with it,
// until the daemon moves it at start. This package never logs or returns
// key bytes anywhere but to its caller.
package keys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/aibo-privacy/aibo-privacyd/internal/fsx"
)

// Size is the length of every key: AES-256.
const Size = 32

// ErrOpen means sealed bytes could not be authenticated: wrong key, wrong
// associated data, or tampering.
var ErrOpen = errors.New("keys: message authentication failed")

// New returns a fresh random key.
func New() []byte {
	k := make([]byte, Size)
	if _, err := rand.Read(k); err != nil {
		panic(fmt.Sprintf("keys: system randomness failed: %v", err)) // crypto/rand never fails on Linux
	}
	return k
}

// LoadOrCreateDeviceKey reads the device key at path, creating it with mode
// 0600 on first start. A key file of the wrong size, or readable by group or
// others, is refused rather than used.
func LoadOrCreateDeviceKey(path string) ([]byte, error) {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		k := New()
		if err := fsx.WriteFileAtomic(path, k, 0o600); err != nil {
			return nil, fmt.Errorf("create device key: %w", err)
		}
		return k, nil
	case err != nil:
		return nil, fmt.Errorf("device key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("device key %s has mode %v; it must be 0600", path, st.Mode().Perm())
	}
	k, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("device key: %w", err)
	}
	if len(k) != Size {
		return nil, fmt.Errorf("device key %s has %d bytes, want %d", path, len(k), Size)
	}
	return k, nil
}

// Seal encrypts and authenticates plaintext under key, binding aad (for
// example the record id) so sealed bytes cannot be swapped between records.
// The output is nonce || ciphertext || tag.
func Seal(key, plaintext, aad []byte) ([]byte, error) {
	g, err := gcm(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, g.NonceSize(), g.NonceSize()+len(plaintext)+g.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("keys: nonce: %w", err)
	}
	return g.Seal(out, out, plaintext, aad), nil
}

// Open reverses Seal.
func Open(key, sealed, aad []byte) ([]byte, error) {
	g, err := gcm(key)
	if err != nil {
		return nil, err
	}
	if len(sealed) < g.NonceSize()+g.Overhead() {
		return nil, ErrOpen
	}
	pt, err := g.Open(nil, sealed[:g.NonceSize()], sealed[g.NonceSize():], aad)
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

func gcm(key []byte) (cipher.AEAD, error) {
	if len(key) != Size {
		return nil, fmt.Errorf("keys: key has %d bytes, want %d", len(key), Size)
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}
