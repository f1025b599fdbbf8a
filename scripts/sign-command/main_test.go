package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/config"
	"github.com/aibo-privacy/aibo-privacyd/internal/envelope"
)

// TestSignedCommandOpensWithTheKeyItPrinted checks the script: -genkey
// -key (as sign-firmware spells it) prints a config fragment the daemon
// loads, and what it signs, naming the device from -config or -device, is
// an envelope that key verifies. (That the daemon's dispatcher accepts it
// on that device only is checked from agent/command's side:
// TestWhatSignCommandSignsIsAcceptedOnItsDeviceOnly.)
func TestSignedCommandOpensWithTheKeyItPrinted(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "owner.key")
	var printed bytes.Buffer
	if err := run([]string{"-genkey", "-key", keyFile, "-kid", "k7"}, &printed, time.Now); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	if err := run([]string{"-genkey", "-key", keyFile}, &bytes.Buffer{}, time.Now); err == nil {
		t.Fatal("-genkey overwrote a key")
	}
	// What it printed is a config fragment the daemon loads.
	cfgFile := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfgFile, []byte("device_id: aibo-0042\nmqtt:\n  broker: tcp://127.0.0.1:1883\n"+printed.String()), 0o600)
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatalf("printed keys do not load: %v\n%s", err, printed.String())
	}
	keys, _ := config.PublicKeys(cfg.Security.CommandKeys)

	now := time.Now()
	sign := func(args ...string) []byte {
		t.Helper()
		var out bytes.Buffer
		if err := run(append([]string{"-key", keyFile, "-kid", "k7"}, args...), &out, func() time.Time { return now }); err != nil {
			t.Fatal(err)
		}
		return bytes.TrimSpace(out.Bytes())
	}
	fromConfig := sign("-config", cfgFile, `{"id":"c1","type":"ping","payload":{"n":12345678901234567890}}`)
	fromFlag := sign("-device", "aibo-0042", `{"id":"c2","type":"ping"}`)

	for _, raw := range [][]byte{fromConfig, fromFlag} {
		env, err := envelope.Open(raw)
		if err != nil || env.Kid != "k7" || !env.Verify(keys["k7"]) {
			t.Fatalf("%s: not an envelope the printed key verifies (%v)", raw, err)
		}
		var c struct {
			DeviceID string `json:"device_id"`
		}
		if json.Unmarshal(env.Body, &c) != nil || c.DeviceID != "aibo-0042" {
			t.Fatalf("signed body %s does not name the device", env.Body)
		}
	}
	// Numbers go out as they came in.
	var envelope struct{ Body string }
	json.Unmarshal(fromConfig, &envelope)
	body, _ := base64.StdEncoding.DecodeString(envelope.Body)
	if !strings.Contains(string(body), "12345678901234567890") || !strings.Contains(string(body), `"device_id":"aibo-0042"`) {
		t.Fatalf("signed body %s", body)
	}
}

func TestSignCommandRefusesWhatTheDaemonWouldRefuse(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "k")
	run([]string{"-genkey", "-key", keyFile}, &bytes.Buffer{}, time.Now)
	for name, args := range map[string][]string{
		"no device":         {"-key", keyFile, `{"id":"c","type":"x"}`},
		"another device":    {"-key", keyFile, "-device", "a", `{"id":"c","type":"x","device_id":"b"}`},
		"member twice":      {"-key", keyFile, "-device", "a", `{"id":"c","type":"x","type":"y"}`},
		"device_id twice":   {"-key", keyFile, "-device", "a", `{"id":"c","device_id":"a","device_id":"b"}`},
		"not one object":    {"-key", keyFile, "-device", "a", `{"id":"c"} {}`},
		"device and config": {"-key", keyFile, "-device", "a", "-config", "x.yaml", `{"id":"c"}`},
	} {
		if err := run(args, &bytes.Buffer{}, time.Now); err == nil {
			t.Errorf("%s: signed", name)
		}
	}
}
