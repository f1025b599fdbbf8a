package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/store"
	"github.com/aibo-privacy/aibo-privacyd/firmware"
	"github.com/aibo-privacy/aibo-privacyd/internal/envelope"
)

// TestOfferIsStagedByTheDaemonsPackage checks the script against the real
// verifier: its offer is accepted and its chunk files stage the image.
func TestOfferIsStagedByTheDaemonsPackage(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "fw.key")
	stdout := os.Stdout
	r, w, _ := os.Pipe()
	os.Stdout = w
	err := genKey(keyFile, "dev")
	os.Stdout = stdout
	w.Close()
	printed, _ := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := genKey(keyFile, "dev"); err == nil {
		t.Fatal("genKey overwrote a key")
	}
	// firmware:\n  keys:\n    dev: BASE64
	fields := strings.Fields(string(printed))
	if len(fields) != 4 || fields[2] != "dev:" {
		t.Fatalf("printed %q, want the firmware.keys lines", printed)
	}
	pub, err := base64.StdEncoding.DecodeString(fields[3])
	if err != nil || len(pub) != ed25519.PublicKeySize {
		t.Fatalf("printed public key %q: %v", printed, err)
	}
	priv, err := readKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}

	img := bytes.Repeat([]byte("aibo firmware "), 20000) // 280000 bytes
	cmd, err := offer(priv, "dev", "1.2.3-rc/1", "2026-12", true, 65536, true, img, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if err := writeOut(out, cmd, img, 65536, "1.2.3-rc/1", "aibo-dev", "127.0.0.1", 18830); err != nil {
		t.Fatal(err)
	}
	var c struct {
		Type    string          `json:"type"`
		Payload json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(cmd, &c); err != nil || c.Type != "firmware_offer" {
		t.Fatalf("command %s: %v", cmd, err)
	}

	st, err := store.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var staged []firmware.Manifest
	m, err := firmware.New(st, firmware.Config{
		Dir: filepath.Join(dir, "firmware"), Installed: "1.0.0",
		Keys:     map[string]ed25519.PublicKey{"dev": pub},
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnStaged: func(m firmware.Manifest) { staged = append(staged, m) },
	})
	if err != nil {
		t.Fatal(err)
	}
	var man firmware.Manifest
	err = st.Update(func(tx *bolt.Tx) error {
		man, err = m.Offer(tx, time.Now(), c.Payload)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if man.Version != "1.2.3-rc/1" || man.Chunks != 5 || !man.MaterialPolicyChange || man.PolicyVersion != "2026-12" {
		t.Fatalf("manifest %+v", man)
	}
	script, err := os.ReadFile(filepath.Join(out, "publish.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(script), "-t 'aibo/aibo-dev/cmd' -f") {
		t.Fatalf("publish.sh does not publish the offer on aibo/aibo-dev/cmd:\n%s", script)
	}
	for n := range man.Chunks {
		topic := fmt.Sprintf("aibo/aibo-dev/firmware/1.2.3-rc/1/chunk/%d", n)
		if !strings.Contains(string(script), topic) {
			t.Fatalf("publish.sh does not publish %s", topic)
		}
		data, err := os.ReadFile(filepath.Join(out, fmt.Sprintf("chunk-%d.bin", n)))
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 { // a bad copy first: chunk_sha256 drops it, the good one follows
			m.HandleChunkMessage(topic, append([]byte("x"), data[1:]...))
		}
		m.HandleChunkMessage(topic, data)
	}
	if len(staged) != 1 || staged[0] != man {
		t.Fatalf("staged %+v", staged)
	}
	got, err := os.ReadFile(filepath.Join(dir, "firmware", firmware.StagedFile))
	if err != nil || !bytes.Equal(got, img) {
		t.Fatalf("staged image differs (%v)", err)
	}
	if err := checkVersion("1.2.3-a#b"); err == nil {
		t.Fatal("a version with # accepted")
	}
}

// With command keys set a robot refuses an unsigned offer (unsigned): with
// -command-key the offer is a signed command, naming the device, that the
// owner's key verifies (internal/envelope, as the daemon's verifier opens
// it).
func TestOfferSignedAsACommandPassesTheVerifier(t *testing.T) {
	_, fwKey, _ := ed25519.GenerateKey(nil)
	pub, owner, _ := ed25519.GenerateKey(nil)
	cmd, err := offer(fwKey, "dev", "1.2.3", "", false, 65536, true, []byte("image"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := envelope.Open(cmd); !errors.Is(err, envelope.ErrNotEnvelope) {
		t.Fatalf("plain offer: %v, want a plain command (unsigned)", err)
	}
	signed, err := signCommand(cmd, owner, "k1", "aibo-dev")
	if err != nil {
		t.Fatal(err)
	}
	v, err := envelope.Open(signed)
	if err != nil || v.Kid != "k1" || !v.Verify(pub) {
		t.Fatalf("signed offer does not verify: %v", err)
	}
	var c struct {
		Type     string `json:"type"`
		DeviceID string `json:"device_id"`
	}
	if err := json.Unmarshal(v.Body, &c); err != nil || c.Type != "firmware_offer" || c.DeviceID != "aibo-dev" {
		t.Fatalf("body %s", v.Body)
	}
}
