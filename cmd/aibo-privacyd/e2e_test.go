package main

import (
	"bytes"
	"crypto/ed25519"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/store"
	"github.com/aibo-privacy/aibo-privacyd/internal/envelope"
	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// enableAutoPhoto is the owner's app flow: accept the policy, then switch
// automatic photos on.
func enableAutoPhoto(a *app) {
	a.t.Helper()
	a.must("accept-1", "accept_policy", map[string]any{"version": "2026-11"})
	a.must("features-1", "set_features", map[string]any{"auto_photo": true})
}

func TestP1_PhotosAreRefusedUnreadWhileAutoPhotoIsOff(t *testing.T) {
	b := testbroker.Start(t)
	r := newRig(t, b, "")
	a := newApp(t, b, r.deviceID)
	r.start()
	for i, p := range photos(t, 5) {
		r.drop("off-"+string(rune('a'+i))+".jpg", p)
	}
	r.waitSpoolEmpty(2 * time.Second)
	a.state(func(s map[string]any) bool { return num(s, "photos_today", "refused") == 5 })
	if c := r.today(); c.Refused != 5 || c.Admitted != 0 {
		t.Fatalf("photos_today %+v, want 5 refused", c)
	}
	if n := vaultFiles(t, r); n != 0 {
		t.Fatalf("%d photos kept while auto_photo is off", n)
	}
	// Policy accepted but the switch still off: still refused.
	a.must("accept-1", "accept_policy", map[string]any{"version": "2026-11"})
	r.drop("off-z.jpg", photos(t, 1)[0])
	r.waitSpoolEmpty(2 * time.Second)
	if c := r.today(); c.Refused != 6 {
		t.Fatalf("photos_today %+v, want 6 refused", c)
	}
	r.stop()
}

func TestP14_AppFlowNeedsAcceptedPolicyAndRepeatsAreHarmless(t *testing.T) {
	b := testbroker.Start(t)
	r := newRig(t, b, "")
	a := newApp(t, b, r.deviceID)
	r.start()
	a.status.WaitFor(t, 5*time.Second, func(m testbroker.Message) bool {
		return string(m.Payload) == "online" && m.Retained || string(m.Payload) == "online"
	})

	res := a.send("f-1", "set_features", map[string]any{"auto_photo": true})
	if res.OK || res.Error == nil || res.Error.Code != "policy_not_accepted" {
		t.Fatalf("auto_photo before accept_policy: %+v", res)
	}
	a.must("p-1", "accept_policy", map[string]any{"version": "2026-11"})
	first := a.send("f-2", "set_features", map[string]any{"auto_photo": true})
	if !first.OK {
		t.Fatalf("set_features after accept_policy: %+v", first.Error)
	}
	// The same id again: the same answer, no second effect (no second audit record).
	auditBefore := auditCount(t, r)
	again := a.send("f-2", "set_features", map[string]any{"auto_photo": false})
	if !again.OK || string(again.Result) != string(first.Result) {
		t.Fatalf("repeated id answered differently: %s vs %s", again.Result, first.Result)
	}
	st := a.state(func(s map[string]any) bool { return feature(s, "auto_photo") })
	if st["policy_version"] != "2026-11" || st["device_id"] != r.deviceID {
		t.Fatalf("state %v", st)
	}
	// A late subscriber sees the retained state with the feature on.
	late := b.Client(t).Subscribe(t, a.topic("state"))
	m := late.Next(t, 5*time.Second)
	var s map[string]any
	json.Unmarshal(m.Payload, &s)
	if !m.Retained || !feature(s, "auto_photo") {
		t.Fatalf("retained state %s (retained=%v)", m.Payload, m.Retained)
	}
	if got := auditCount(t, r); got != auditBefore {
		t.Fatalf("audit grew by %d on a repeated command", got-auditBefore)
	}
	r.stop()
	// The clean stop leaves "offline" retained.
	last := b.Client(t).Subscribe(t, a.topic("status")).Next(t, 5*time.Second)
	if string(last.Payload) != "offline" {
		t.Fatalf("status after stop %q", last.Payload)
	}
}

func TestP2_DailyCapHoldsAcrossRestart(t *testing.T) {
	b := testbroker.Start(t)
	r := newRig(t, b, "")
	a := newApp(t, b, r.deviceID)
	metas := a.c.Subscribe(t, a.topic("artifacts/+/meta"))
	r.start()
	enableAutoPhoto(a)
	for i, p := range photos(t, 35) {
		r.drop(name("cap", i), p)
	}
	r.waitSpoolEmpty(2 * time.Second)
	a.state(func(s map[string]any) bool {
		return num(s, "photos_today", "admitted")+num(s, "photos_today", "over_cap") == 35
	})
	if c := r.today(); c.Admitted != 30 || c.OverCap != 5 {
		t.Fatalf("photos_today %+v, want 30 admitted and 5 over_cap", c)
	}
	a.events.WaitFor(t, 5*time.Second, func(m testbroker.Message) bool { return bytes.Contains(m.Payload, []byte(`"cap_reached"`)) })
	// The day is complete: its selection runs without select_photos, and
	// every admitted photo is either queued for upload or deleted (each
	// kept one readied by a worker of its own: no contractual bound).
	done := a.events.WaitFor(t, 60*time.Second, func(m testbroker.Message) bool { return bytes.Contains(m.Payload, []byte(`"selection_done"`)) })
	var sel struct{ Kept, Deleted int }
	if err := json.Unmarshal(done.Payload, &sel); err != nil || sel.Kept < 1 || sel.Kept+sel.Deleted != 30 {
		t.Fatalf("selection_done %s: want the day's 30 photos decided, some kept", done.Payload)
	}
	metas.WaitFor(t, 10*time.Second, func(m testbroker.Message) bool { return bytes.Contains(m.Payload, []byte(`"kind":"photo"`)) })
	r.stop()

	r.start()
	if c := r.today(); c.Admitted != 30 || c.OverCap != 5 {
		t.Fatalf("after restart photos_today %+v", c)
	}
	r.drop("after-restart.jpg", photos(t, 1)[0])
	r.waitSpoolEmpty(2 * time.Second)
	if c := r.today(); c.Admitted != 30 || c.OverCap != 6 {
		t.Fatalf("a restart granted more photos: %+v", c)
	}
	if n := vaultFiles(t, r); n != 0 {
		t.Fatalf("%d sealed photos left on disk after the day's selection, want 0", n)
	}
	r.stop()
}

func TestP2_CrashDuringAStormLosesAndDoublesNothing(t *testing.T) {
	b := testbroker.Start(t)
	r := newRig(t, b, "")
	a := newApp(t, b, r.deviceID)
	r.start()
	enableAutoPhoto(a)
	imgs := photos(t, 40)
	for i := 36; i < 40; i++ {
		imgs[i] = imgs[i][:len(imgs[i])/2] // four truncated JPEGs in the storm
	}
	for i, p := range imgs {
		r.drop(name("storm", i), p)
	}
	// kill -9 twice while the storm is being decided, at different points.
	for _, left := range []int{34, 20} {
		deadline := time.Now().Add(5 * time.Second)
		for r.spoolCount() > left && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		r.kill()
		r.start()
	}
	r.waitSpoolEmpty(3 * time.Second)
	time.Sleep(100 * time.Millisecond)
	c := r.today()
	if c.decided() != 40 {
		t.Fatalf("after two crashes %+v: %d decided, want exactly 40", c, c.decided())
	}
	if c.Admitted != 30 {
		t.Fatalf("admitted %d, want 30 (36 valid photos, cap 30)", c.Admitted)
	}
	r.stop()
	// Exactly one sealed file per record and one record per file. The
	// 30th admission starts the day's selection, which may have decided
	// some before the stop: those are queued or deleted, never lost.
	records := photoRecords(t, r)
	files := vaultIDs(t, r)
	off := r.todayOffline(t)
	if len(records) != len(files) || len(records)+r.queuedPhotos(t)+off.Deleted+off.Uploaded != 30 {
		t.Fatalf("%d records and %d files, %d queued, %d deleted: want 30 in all, each once", len(records), len(files), r.queuedPhotos(t), off.Deleted)
	}
	for id := range records {
		if !files[id] {
			t.Fatalf("record %s has no file", id)
		}
	}
	checkStore(t, r)
}

func TestBadImagesAreInvalidAndTheDaemonStaysHealthy(t *testing.T) {
	b := testbroker.Start(t)
	r := newRig(t, b, "")
	a := newApp(t, b, r.deviceID)
	r.start()
	enableAutoPhoto(a)
	good := photos(t, 1)[0]
	random := make([]byte, 64<<10)
	for i := range random {
		random[i] = byte(rand.IntN(256))
	}
	bad := map[string][]byte{
		"empty.jpg":     {},
		"random.jpg":    random,
		"truncated.jpg": good[:len(good)*2/3],
		"huge.png":      pngHeader(50000, 50000),
		"huge-jpeg.jpg": jpegHeader(8000, 6000), // 48 MP claimed in the SOF
	}
	for n, data := range bad {
		r.drop(n, data)
	}
	r.waitSpoolEmpty(2 * time.Second)
	a.state(func(s map[string]any) bool { return num(s, "photos_today", "invalid") == len(bad) })
	if c := r.today(); c.Invalid != len(bad) || c.Admitted != 0 {
		t.Fatalf("photos_today %+v, want %d invalid", c, len(bad))
	}
	r.waitHealthy(10 * time.Second) // bad images leave the daemon healthy
	if hwm := peakRSS(t, r.cmd.Process.Pid); hwm > 200<<20 {
		t.Fatalf("peak RSS %d MiB after bad images", hwm>>20)
	}
	// A good photo still goes in.
	r.drop("good.jpg", good)
	r.waitSpoolEmpty(2 * time.Second)
	if c := r.today(); c.Admitted != 1 {
		t.Fatalf("good photo after bad ones: %+v", c)
	}
	r.stop()
}

func TestBadCommandsGetErrorsAndTheDaemonKeepsWorking(t *testing.T) {
	b := testbroker.Start(t)
	r := newRig(t, b, "")
	a := newApp(t, b, r.deviceID)
	r.start()
	cases := []struct {
		id, raw, code string
	}{
		{"", `{"i": "broken", "type": `, ""},
		{"broken", `{"id": "broken", "type": `, "bad_request"},
		{"", `{"type":"accept_policy","payload":{"version":"1"}}`, ""},
		{"no-type", `{"id":"no-type","payload":{}}`, "bad_request"},
		{"unknown", `{"id":"unknown","type":"feed_the_dog","payload":{}}`, "unknown_type"},
		{"bad-payload", `{"id":"bad-payload","type":"set_features","payload":{"auto_photo":"yes"}}`, "bad_request"},
		{"no-feature", `{"id":"no-feature","type":"set_features","payload":{"teleport":true}}`, "bad_request"},
		{"bad-region", `{"id":"bad-region","type":"set_region","payload":{"region":"Illinois"}}`, "bad_request"},
		{"huge", `{"id":"huge","type":"accept_policy","payload":{"version":"` + strings.Repeat("x", 300<<10) + `"}}`, "bad_request"},
	}
	// The id-less commands get no answer that could be waited for: the
	// daemon's subscription must be live before the first is published (a
	// slower broker, RabbitMQ, makes it live later than Mosquitto, and a
	// command published before is lost). An answered command proves it.
	if res := a.sendRaw("ready", []byte(`{"id":"ready","type":"no_such_command","payload":{}}`)); res.Error == nil || res.Error.Code != "unknown_type" {
		t.Fatalf("ready: %+v", res)
	}
	for _, c := range cases {
		if c.id == "" {
			a.c.Publish(t, a.topic("cmd"), []byte(c.raw), false)
			continue
		}
		res := a.sendRaw(c.id, []byte(c.raw))
		if res.OK || res.Error == nil || res.Error.Code != c.code {
			t.Errorf("%s: got %+v, want %s", c.id, res, c.code)
		}
	}
	// Commands without a readable id leave a log line, not a result.
	if got := strings.Count(r.logs.String(), "command dropped"); got < 2 {
		t.Errorf("%d log lines for unanswerable commands, want 2", got)
	}
	a.must("after", "accept_policy", map[string]any{"version": "2026-11"})
	r.waitHealthy(10 * time.Second)
	r.stop()
}

func TestDiagnosticSocketRefusesOtherUIDs(t *testing.T) {
	r := newRig(t, nil, "") // no broker: the socket must work without one
	r.start()
	r.stop()
	other := os.Getuid() + 12345
	r2 := newRig(t, nil, "")
	os.WriteFile(r2.config, append(mustRead(t, r2.config), []byte("  allowed_uids: ["+itoa(other)+"]\n")...), 0o600)
	r2.start()
	out, code := r2.ctl("status")
	if code != 4 || !strings.Contains(out, "forbidden") {
		t.Fatalf("a uid outside allowed_uids got: exit %d %s", code, out)
	}
	r2.stop()
}

func TestAuditVerifyFindsAnEditedRecord(t *testing.T) {
	b := testbroker.Start(t)
	r := newRig(t, b, "")
	a := newApp(t, b, r.deviceID)
	r.start()
	enableAutoPhoto(a)
	if out, code := r.ctl("audit", "verify"); code != 0 || !strings.Contains(out, "OK") {
		t.Fatalf("intact chain: %d %s", code, out)
	}
	out, _ := r.ctl("audit", "--json")
	if !strings.Contains(out, "feature_changed") || !strings.Contains(out, "policy_accepted") {
		t.Fatalf("audit lacks the owner's decisions: %s", out)
	}
	r.stop()

	// Someone with the file rewrites history: auto_photo was never switched on.
	db, err := bolt.Open(filepath.Join(r.dataDir, "state.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	edited := false
	db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(store.BucketAudit)
		return b.ForEach(func(k, v []byte) error {
			if !edited && bytes.Contains(v, []byte(`"feature_changed"`)) {
				edited = true
				return b.Put(k, bytes.Replace(v, []byte(`"on":"true"`), []byte(`"on":"false"`), 1))
			}
			return nil
		})
	})
	db.Close()
	if !edited {
		t.Fatal("no feature_changed record to edit")
	}
	r.start()
	out, code := r.ctl("audit", "verify")
	if code != 1 || !strings.Contains(out, "BROKEN") {
		t.Fatalf("edited record not found: exit %d %s", code, out)
	}
	r.stop()
}

func TestBadConfigExitsWithOneLine(t *testing.T) {
	cases := map[string]string{
		"unknown key":  "photos:\n  daily_cap: 20\n  dialy_cap: 20\n",
		"cap above 30": "photos:\n  daily_cap: 31\n",
		"bad timezone": "timezone: Mars/Olympus\n",
		"bad region":   "region: Illinois\n",
		"bad key":      "security:\n  command_keys: {k1: not-base64!}\n",
	}
	for name, yaml := range cases {
		t.Run(name, func(t *testing.T) {
			r := newRig(t, nil, "")
			cfg := mustRead(t, r.config)
			// later keys override: drop the generated line the case replaces
			lines := []string{}
			for _, l := range strings.Split(string(cfg), "\n") {
				key := strings.SplitN(yaml, ":", 2)[0]
				if strings.HasPrefix(l, key+":") {
					continue
				}
				lines = append(lines, l)
			}
			os.WriteFile(r.config, []byte(strings.Join(lines, "\n")+"\n"+yaml), 0o600)
			out, code := runOnce(t, "-config", r.config)
			if code == 0 {
				t.Fatalf("daemon accepted a bad config: %s", out)
			}
			if strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.HasPrefix(out, "aibo-privacyd: ") {
				t.Fatalf("want one line of reason, got %q", out)
			}
		})
	}
	if out, code := runOnce(t, "-config", "/nonexistent/aibo.yaml"); code == 0 || !strings.Contains(out, "read config") {
		t.Fatalf("unreadable file: %d %q", code, out)
	}
}

func name(prefix string, i int) string { return prefix + "-" + itoa(i) + ".jpg" }

func itoa(i int) string { return strconv.Itoa(i) }

func num(s map[string]any, keys ...string) int {
	var v any = s
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return -1
		}
		v = m[k]
	}
	f, _ := v.(float64)
	return int(f)
}

func feature(s map[string]any, f string) bool {
	m, _ := s["features"].(map[string]any)
	on, _ := m[f].(bool)
	return on
}

func mustRead(t *testing.T, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func vaultFiles(t *testing.T, r *rig) int { return len(vaultIDs(t, r)) }

func vaultIDs(t *testing.T, r *rig) map[string]bool {
	entries, _ := os.ReadDir(filepath.Join(r.dataDir, "photos"))
	out := map[string]bool{}
	for _, e := range entries {
		if id, ok := strings.CutSuffix(e.Name(), ".photo"); ok {
			out[id] = true
		}
	}
	return out
}

func photoRecords(t *testing.T, r *rig) map[string]bool {
	db, err := bolt.Open(filepath.Join(r.dataDir, "state.db"), 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := map[string]bool{}
	db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(store.BucketPhotos).ForEach(func(k, _ []byte) error { out[string(k)] = true; return nil })
	})
	return out
}

func checkStore(t *testing.T, r *rig) {
	s, err := store.Open(filepath.Join(r.dataDir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}

// auditCount counts the audit records of decisions (technician access
// records, which every aiboctl call adds, left out).
func auditCount(t *testing.T, r *rig) int {
	out, code := r.ctl("audit", "-limit", "1000", "--json")
	if code != 0 {
		t.Fatalf("aiboctl audit: %d %s", code, out)
	}
	var recs []struct{ Type string }
	if err := json.Unmarshal([]byte(out), &recs); err != nil {
		t.Fatalf("aiboctl audit --json: %v %s", err, out)
	}
	n := 0
	for _, r := range recs {
		if r.Type != "technician_access" {
			n++
		}
	}
	return n
}

// pngHeader is a PNG signature and IHDR chunk claiming w x h, with nothing
// after it.
func pngHeader(w, h uint32) []byte {
	var buf bytes.Buffer
	buf.Write([]byte("\x89PNG\r\n\x1a\n"))
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	binary.Write(&buf, binary.BigEndian, uint32(13))
	chunk := append([]byte("IHDR"), ihdr...)
	buf.Write(chunk)
	binary.Write(&buf, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return buf.Bytes()
}

// jpegHeader is SOI and a baseline SOF0 claiming w x h.
func jpegHeader(w, h uint16) []byte {
	b := []byte{0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08}
	b = binary.BigEndian.AppendUint16(b, h)
	b = binary.BigEndian.AppendUint16(b, w)
	b = append(b, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1)
	return b
}

// peakRSS reads VmHWM of a process.
func peakRSS(t *testing.T, pid int) int {
	raw, err := os.ReadFile("/proc/" + itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			var kb int
			json.Unmarshal([]byte(f[1]), &kb)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

func TestP16_SignedModeRefusesForgeriesAndReplays(t *testing.T) {
	b := testbroker.Start(t)
	pub, priv, _ := ed25519.GenerateKey(crand.Reader)
	r := newRig(t, b, "security:\n  command_keys:\n    k1: "+base64.StdEncoding.EncodeToString(pub)+"\n")
	a := newApp(t, b, r.deviceID)
	r.start()
	signed := func(id, typ string, payload any) []byte {
		body, _ := json.Marshal(map[string]any{"id": id, "type": typ, "device_id": r.deviceID, "issued_at": time.Now().UTC().Format(time.RFC3339), "payload": payload})
		return envelope.Sign("k1", priv, body)
	}
	if res := a.send("plain-1", "accept_policy", map[string]any{"version": "v1"}); res.OK || res.Error.Code != "unsigned" {
		t.Fatalf("unsigned command in signed mode: %+v", res)
	}
	_, stranger, _ := ed25519.GenerateKey(crand.Reader)
	body, _ := json.Marshal(map[string]any{"id": "forged-1", "type": "accept_policy", "device_id": r.deviceID, "issued_at": time.Now().UTC().Format(time.RFC3339), "payload": map[string]any{"version": "v1"}})
	if res := a.sendRaw("forged-1", envelope.Sign("k1", stranger, body)); res.OK || res.Error.Code != "bad_signature" {
		t.Fatalf("forged command: %+v", res)
	}
	if res := a.sendRaw("s-1", signed("s-1", "accept_policy", map[string]any{"version": "v1"})); !res.OK {
		t.Fatalf("signed command: %+v", res.Error)
	}
	on := signed("s-2", "set_features", map[string]any{"auto_photo": true})
	if res := a.sendRaw("s-2", on); !res.OK {
		t.Fatalf("signed set_features: %+v", res.Error)
	}
	off := signed("s-3", "set_features", map[string]any{"auto_photo": false})
	a.sendRaw("s-3", off)
	before := auditCount(t, r)
	r.stop()
	r.start()
	// The captured "on" command replayed after a restart answers its old
	// result and does not switch the feature back on.
	if res := a.sendRaw("s-2", on); !res.OK {
		t.Fatalf("replay answered %+v", res.Error)
	}
	if feature(r.status(), "auto_photo") {
		t.Fatal("a replayed command acted twice")
	}
	if got := auditCount(t, r); got != before {
		t.Fatalf("replay added %d audit records", got-before)
	}
	r.stop()
}

func TestSelftestNamesWhatIsWrong(t *testing.T) {
	b := testbroker.Start(t)
	r := newRig(t, b, "")
	a := newApp(t, b, r.deviceID)
	r.start()
	a.status.WaitFor(t, 5*time.Second, func(m testbroker.Message) bool { return string(m.Payload) == "online" })
	if out, code := r.ctl("selftest"); code != 0 {
		t.Fatalf("selftest on a healthy device: exit %d\n%s", code, out)
	}
	b.Stop() // the dead broker is what the technician must see
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, code := r.ctl("selftest", "--json")
		var h struct {
			Status string
			Checks map[string]struct{ OK bool }
		}
		json.Unmarshal([]byte(out), &h)
		if code == 1 && h.Status == "degraded" && !h.Checks["broker"].OK && h.Checks["store_integrity"].OK && h.Checks["clock"].OK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("selftest with the broker down: exit %d %s", code, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Nothing the probe wrote is left for the intake to count.
	if c := r.today(); c.decided() != 0 {
		t.Fatalf("selftest left spool files behind: %+v", c)
	}
	r.stop()
}
