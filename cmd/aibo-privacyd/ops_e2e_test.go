package main

import (
	"bufio"
	"crypto/ed25519"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/aibo-privacy/aibo-privacyd/internal/envelope"
	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
	"github.com/aibo-privacy/aibo-privacyd/vision"
)

// logLines parses the daemon's JSON log.
func logLines(t *testing.T, logs string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("log line is not JSON (make run | jq would break): %q", line)
			continue
		}
		out = append(out, m)
	}
	return out
}

// findLog returns the first line with msg whose fields match want.
func findLog(lines []map[string]any, msg string, want map[string]any) map[string]any {
	for _, l := range lines {
		if l["msg"] != msg {
			continue
		}
		ok := true
		for k, v := range want {
			if l[k] != v {
				ok = false
			}
		}
		if ok {
			return l
		}
	}
	return nil
}

// durationKeys are the keys that carry a time.Duration in the daemon's
// log lines; each must be a string such as "913ms".
var durationKeys = []string{"took", "retry_in", "timeout", "after", "interval", "window"}

func checkDurations(t *testing.T, lines []map[string]any) {
	t.Helper()
	for _, l := range lines {
		for _, k := range durationKeys {
			if v, ok := l[k]; ok {
				if _, isString := v.(string); !isString {
					t.Errorf("%s logged as %v (%T), want a duration string: %v", k, v, v, l)
				}
			}
		}
	}
}

// A robot whose broker is away says when it tries again as "1.2s", not as
// nanoseconds.
func TestLogsSayDurationsAsStrings(t *testing.T) {
	r := newRig(t, nil, "") // broker tcp://127.0.0.1:1: nobody listens
	r.start()
	deadline := time.Now().Add(10 * time.Second)
	for findLog(logLines(t, r.logs.String()), "mqtt connect failed", nil) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("no 'mqtt connect failed' line:\n%s", r.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.stop()
	lines := logLines(t, r.logs.String())
	l := findLog(lines, "mqtt connect failed", nil)
	if s, ok := l["retry_in"].(string); !ok || !strings.HasSuffix(s, "s") {
		t.Errorf("retry_in = %#v, want a duration string: %v", l["retry_in"], l)
	}
	checkDurations(t, lines)
}

// The operator's view of one signed day: refused commands at WARN with
// their type, effects summarised without names, uploads and acks at INFO,
// why each photo went, and metrics that pass promtool's lint.
func TestOperatorSeesRefusalsEffectsUploadsAndMetrics(t *testing.T) {
	b := testbroker.Start(t)
	pub, priv, _ := ed25519.GenerateKey(crand.Reader)
	r := newRig(t, b, "photos:\n  keep_per_day: 2\nsecurity:\n  command_keys:\n    k1: "+base64.StdEncoding.EncodeToString(pub)+"\n")
	a := newApp(t, b, r.deviceID)
	cl := newCloud(t, b, a)
	r.start()
	signed := func(id, typ string, payload any) result {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"id": id, "type": typ, "device_id": r.deviceID, "issued_at": time.Now().UTC().Format(time.RFC3339), "payload": payload})
		return a.sendRaw(id, envelope.Sign("k1", priv, body))
	}
	if res := a.send("plain-1", "accept_policy", map[string]any{"version": "2026-11"}); res.OK || res.Error.Code != "unsigned" {
		t.Fatalf("unsigned: %+v", res)
	}
	_, stranger, _ := ed25519.GenerateKey(crand.Reader)
	forged, _ := json.Marshal(map[string]any{"id": "forged-1", "type": "set_features", "issued_at": time.Now().UTC().Format(time.RFC3339), "payload": map[string]any{"auto_photo": true}})
	if res := a.sendRaw("forged-1", envelope.Sign("k1", stranger, forged)); res.OK || res.Error.Code != "bad_signature" {
		t.Fatalf("forged: %+v", res)
	}
	if res := signed("odd-1", "make_coffee-"+r.deviceID, map[string]any{}); res.OK || res.Error.Code != "unknown_type" {
		t.Fatalf("unknown type: %+v", res)
	}
	for _, c := range []struct {
		id, typ string
		payload any
	}{
		{"s-1", "accept_policy", map[string]any{"version": "2026-11"}},
		{"s-2", "set_features", map[string]any{"auto_photo": true}},
		{"s-3", "grant_consent", map[string]any{"subject_id": "p-1", "display_name": "Zelda Quokka", "birthday": "04-12", "granted_by": "self", "scopes": []string{"face_recognition"}}},
	} {
		if res := signed(c.id, c.typ, c.payload); !res.OK {
			t.Fatalf("%s: %+v", c.typ, res.Error)
		}
	}
	good := mustRead(t, "../../testdata/photos/genki-smile-file1564.jpg")
	r.drop("smile.jpg", good)
	r.drop("rocket.jpg", mustRead(t, "../../testdata/photos/rocket.jpg"))
	r.waitSpoolEmpty(2 * time.Second)
	if res := signed("s-4", "select_photos", map[string]any{}); !res.OK {
		t.Fatalf("select_photos: %+v", res.Error)
	}
	ev := eventOf(t, a, "selection_done")
	if num(ev, "kept") != 1 || num(ev, "deleted") != 1 {
		t.Fatalf("selection_done %v", ev)
	}
	m, _ := cl.receive("photo", true)
	// Acked, not only queued: an earlier state had nothing pending too.
	a.state(func(s map[string]any) bool {
		return num(s, "photos_today", "uploaded") == 1 && num(s, "outbox", "pending") == 0
	})

	// Metrics first: the daemon is still running.
	text, code := r.ctl("metrics")
	if code != 0 {
		t.Fatalf("aiboctl metrics: exit %d %s", code, text)
	}
	problems, err := promlint.New(strings.NewReader(text)).Lint()
	if err != nil {
		t.Fatalf("metrics do not parse: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint (as promtool check metrics): %s: %s", p.Metric, p.Text)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := fams["aibo_uptime_seconds"]; ok {
		t.Error("aibo_uptime_seconds duplicates process_start_time_seconds and must go")
	}
	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		v, ok := seriesValue(fams, name, labels)
		if !ok {
			t.Errorf("metric %s%v missing", name, labels)
		}
		return v
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"aibo_selections_total", map[string]string{"outcome": "done"}, 1},
		{"aibo_selection_duration_seconds", nil, 1},
		{"aibo_selected_photos_total", map[string]string{"decision": "kept"}, 1},
		{"aibo_selected_photos_total", map[string]string{"decision": "deleted"}, 1},
		{"aibo_uploads_total", map[string]string{"kind": "photo"}, 1},
		{"aibo_upload_attempts_total", map[string]string{"kind": "photo"}, 1},
		{"aibo_upload_resends_total", map[string]string{"kind": "photo"}, 0},
		{"aibo_upload_nacks_total", map[string]string{"kind": "photo"}, 0},
		{"aibo_outbox_full_refusals_total", map[string]string{"kind": "photo"}, 0},
		{"aibo_outbox_pending_artifacts", nil, 0},
		{"aibo_outbox_pending_bytes", nil, 0},
		{"aibo_events_pending", nil, 0},
		{"aibo_vision_worker_available", nil, 1},
		{"aibo_vision_worker_crashes_total", nil, 0},
		{"aibo_vision_worker_timeouts_total", nil, 0},
		// Issue 21: each layer of the worker's confinement in force, by name.
		{"aibo_vision_confined", nil, 1},
		{"aibo_vision_confinement_layer", map[string]string{"layer": "landlock"}, float64(vision.LandlockABI())},
		{"aibo_vision_confinement_layer", map[string]string{"layer": "seccomp"}, 1},
		{"aibo_vision_confinement_layer", map[string]string{"layer": "namespace_net"}, 1},
		{"aibo_vision_alone_total", nil, 1}, // the kept photo got a worker of its own
		{"aibo_vision_bad_answers_total", nil, 0},
		{"aibo_vision_refused_total", nil, 0},
		{"aibo_commands_total", map[string]string{"type": "accept_policy", "code": "unsigned"}, 1},
		{"aibo_commands_total", map[string]string{"type": "set_features", "code": "bad_signature"}, 1},
		// A sender cannot mint series: an unknown type is "unknown".
		{"aibo_commands_total", map[string]string{"type": "unknown", "code": "unknown_type"}, 1},
		{"aibo_commands_total", map[string]string{"type": "grant_consent", "code": "ok"}, 1},
	} {
		if got := value(c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if got := value("aibo_vision_worker_starts_total", nil); got < 1 {
		t.Errorf("aibo_vision_worker_starts_total = %v, want >= 1", got)
	}
	// Which build runs: the toolchain the test built the daemon with.
	if got := value("aibo_build_info", map[string]string{"go_version": runtime.Version(), "version": "devel"}); got != 1 {
		t.Errorf("aibo_build_info{go_version=%q,version=devel} = %v, want 1", runtime.Version(), got)
	}
	if strings.Contains(text, "make_coffee") {
		t.Error("a command type the sender chose became a label value")
	}
	r.stop()

	lines := logLines(t, r.logs.String())
	checkDurations(t, lines)
	for _, want := range []struct {
		typ, code string
	}{{"accept_policy", "unsigned"}, {"set_features", "bad_signature"}} {
		l := findLog(lines, "command refused", map[string]any{"code": want.code})
		if l == nil || l["level"] != "WARN" || l["type"] != want.typ {
			t.Errorf("refused %s: want a WARN line with type %q, got %v", want.code, want.typ, l)
		}
	}
	if l := findLog(lines, "command done", map[string]any{"type": "set_features"}); l == nil ||
		!strings.Contains(mustJSON(l["effect"]), `"auto_photo":true`) {
		t.Errorf("command done does not say what changed: %v", l)
	}
	if l := findLog(lines, "command done", map[string]any{"type": "grant_consent"}); l == nil || !strings.Contains(mustJSON(l["effect"]), `"p-1"`) {
		t.Errorf("grant_consent's effect: %v", l)
	}
	for _, personal := range []string{"Zelda", "Quokka", "04-12"} {
		if strings.Contains(r.logs.String(), personal) {
			t.Errorf("the log carries %q (personal data)", personal)
		}
	}
	for _, msg := range []string{"artifact sent", "artifact acked"} {
		if l := findLog(lines, msg, map[string]any{"artifact_id": m.ArtifactID}); l == nil || l["level"] != "INFO" {
			t.Errorf("%s: want an INFO line for %s, got %v", msg, m.ArtifactID, l)
		}
	}
	if l := findLog(lines, "photo deleted by selection", map[string]any{"reason": "below_min_score"}); l == nil || l["rank"] != 2.0 {
		t.Errorf("rocket.jpg's deletion not explained: %v", l)
	}
	if l := findLog(lines, "photo kept by selection", nil); l == nil || l["rank"] != 1.0 {
		t.Errorf("the kept photo not logged: %v", l)
	}
	if l := findLog(lines, "photo admitted", map[string]any{"file": "rocket.jpg"}); l == nil || l["photo_id"] == nil {
		t.Errorf("admission does not name its photo id: %v", l)
	}
	if l := findLog(lines, "selection done", nil); l == nil || l["took"] == nil {
		t.Errorf("selection done without its duration: %v", l)
	}
	for _, l := range lines {
		if _, both := l["service"]; both && l["component"] != nil {
			t.Errorf("service and component on one line: %v", l)
		}
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// Every binary says which build it is (runtime/debug build info).
func TestEveryBinaryPrintsItsVersion(t *testing.T) {
	for _, name := range []string{"aibo-privacyd", "aiboctl", "aibo-vision"} {
		out, err := exec.Command(filepath.Join(binDir, name), "-version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), name+" ") || !strings.Contains(string(out), runtime.Version()) {
			t.Errorf("%s -version: %v %q", name, err, out)
		}
	}
}
