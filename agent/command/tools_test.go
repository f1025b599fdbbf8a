package command

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aibo-privacy/aibo-privacyd/config"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
)

// What scripts/sign-command signs (the tool built and run as an owner
// would) is accepted by the dispatcher of the device it names, and refused
// by another's with wrong_device. (The tool's own tests stop at the
// envelope: nothing but the daemon imports the composition.)
func TestWhatSignCommandSignsIsAcceptedOnItsDeviceOnly(t *testing.T) {
	dir := t.TempDir()
	tool := filepath.Join(dir, "sign-command")
	if out, err := exec.Command("go", "build", "-o", tool, "../../scripts/sign-command").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	key := filepath.Join(dir, "owner.key")
	printed, err := exec.Command(tool, "-genkey", "-key", key, "-kid", "k7").Output()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(append([]byte("device_id: aibo-0042\nmqtt:\n  broker: tcp://127.0.0.1:1883\n"), printed...))
	if err != nil {
		t.Fatalf("printed keys do not load: %v\n%s", err, printed)
	}
	keys, err := config.PublicKeys(cfg.Security.CommandKeys)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := exec.Command(tool, "-key", key, "-kid", "k7", "-device", "aibo-0042", `{"id":"c1","type":"ping","payload":{}}`).Output()
	if err != nil {
		t.Fatal(err)
	}
	for device, wantOK := range map[string]bool{"aibo-0042": true, "aibo-0043": false} {
		st, err := store.Open(filepath.Join(t.TempDir(), "state.db"))
		if err != nil {
			t.Fatal(err)
		}
		d := NewDispatcher(st, Options{Authenticate: Verifier(keys), DeviceID: device, Logger: slog.New(slog.DiscardHandler)})
		d.Register("ping", func(context.Context, *Exec) (any, error) { return nil, nil })
		var r Result
		json.Unmarshal(d.Handle(context.Background(), []byte(strings.TrimSpace(string(signed)))), &r)
		if r.OK != wantOK || (!wantOK && (r.Error == nil || r.Error.Code != CodeWrongDevice)) {
			t.Errorf("%s: %+v", device, r)
		}
		st.Close()
	}
	os.Remove(key)
}
