// Package keyfile holds the signing tools' private ed25519 keys: one
// standard-base64 line in a file of mode 0600, never overwritten. It is for
// the tools that play the cloud (scripts/sign-command, scripts/sign-firmware);
// the daemon holds public keys only and never imports it.
package keyfile

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"strings"
)

// Generate makes a new key pair, writes the private key to path (which
// must not exist yet) and returns the public key.
func Generate(path string) (ed25519.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("private key: %w (it is never overwritten)", err)
	}
	if _, err := fmt.Fprintln(f, base64.StdEncoding.EncodeToString(priv)); err != nil {
		f.Close()
		return nil, err
	}
	return pub, f.Close()
}

// Read loads a private key: 64 bytes, or a 32-byte seed.
func Read(path string) (ed25519.PrivateKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		return nil, fmt.Errorf("%s: not standard base64", path)
	}
	switch len(b) {
	case ed25519.PrivateKeySize:
		return ed25519.PrivateKey(b), nil
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(b), nil
	}
	return nil, fmt.Errorf("%s: %d bytes, want an ed25519 private key (64) or seed (32)", path, len(b))
}
