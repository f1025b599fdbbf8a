package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/agent/command"
	"github.com/aibo-privacy/aibo-privacyd/config"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
)

// TestSignedCommandIsAcceptedByTheDaemonsDispatcher checks the script
// against the real verifier: -genkey -key (as sign-firmware spells it), the
// device_id from -config or -device, and the dispatcher of that device
// accepting what it signed while another device refuses it.
func TestSignedCommandIsAcceptedByTheDaemonsDispatcher(t *testing.T) {
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

	dispatcher := func(deviceID string) *command.Dispatcher {
		st, err := store.Open(filepath.Join(t.TempDir(), "state.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		d := command.NewDispatcher(st, command.Options{Authenticate: command.Verifier(keys), DeviceID: deviceID,
			Logger: slog.New(slog.DiscardHandler)})
		d.Register("ping", func(context.Context, *command.Exec) (any, error) { return nil, nil })
		return d
	}
	mine, other := dispatcher("aibo-0042"), dispatcher("aibo-0043")
	for _, env := range [][]byte{fromConfig, fromFlag} {
		var r command.Result
		json.Unmarshal(mine.Handle(context.Background(), env), &r)
		if !r.OK {
			t.Fatalf("this device refused %s: %+v", env, r.Error)
		}
		json.Unmarshal(other.Handle(context.Background(), env), &r)
		if r.OK || r.Error.Code != command.CodeWrongDevice {
			t.Fatalf("another device: %+v", r)
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
