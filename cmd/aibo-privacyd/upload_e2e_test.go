package main

import (
	"bytes"
	"encoding/json"
	"image"
	"image/color"
	"image/jpeg"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/capture/clean"
	"github.com/aibo-privacy/aibo-privacyd/capture/score/synth"
	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

func outboxFiles(t *testing.T, r *rig) int {
	entries, _ := os.ReadDir(filepath.Join(r.dataDir, "outbox"))
	return len(entries)
}

func TestP4_SelectionUploadsTheKeptAndForgetsTheRest(t *testing.T) {
	b := testbroker.Start(t)
	r := newRig(t, b, "photos:\n  keep_per_day: 2\n  min_score: 0.05\n")
	a := newApp(t, b, r.deviceID)
	cl := newCloud(t, b, a)
	r.start()
	enableAutoPhoto(a)
	for i, p := range photos(t, 6) {
		r.drop(name("sel", i), p)
	}
	r.waitSpoolEmpty(2 * time.Second)
	a.must("sel-1", "select_photos", map[string]any{})
	ev := eventOf(t, a, "selection_done")
	if num(ev, "kept") != 2 || num(ev, "deleted") != 4 {
		t.Fatalf("selection_done %v", ev)
	}
	var uploaded []string
	for i := 0; i < 2; i++ {
		m, body := cl.receive("photo", true)
		uploaded = append(uploaded, m.ArtifactID)
		if m.ContentType != "image/jpeg" || m.Attrs["day"] == nil {
			t.Fatalf("manifest %+v", m)
		}
		for _, mk := range clean.Markers(body) {
			if mk >= 0xE0 && mk <= 0xEF || mk == 0xFE {
				t.Fatalf("uploaded photo carries marker %#x", mk)
			}
		}
		if _, err := jpeg.Decode(bytes.NewReader(body)); err != nil {
			t.Fatalf("uploaded photo does not decode: %v", err)
		}
	}
	a.state(func(s map[string]any) bool {
		return num(s, "photos_today", "uploaded") == 2 && num(s, "outbox", "pending") == 0
	})
	if c := r.today(); c.Deleted != 4 || c.Admitted != 6 {
		t.Fatalf("photos_today %+v", c)
	}
	if n := vaultFiles(t, r); n != 0 {
		t.Fatalf("%d photos left in the vault after selection", n)
	}
	if n := outboxFiles(t, r); n != 0 {
		t.Fatalf("%d outbox files left after the acks", n)
	}
	// The owner's feedback teaches the scorer.
	res := a.send("fb-1", "photo_feedback", map[string]any{"artifact_id": uploaded[0], "signal": "favorite"})
	var fb struct {
		Updates     int     `json:"updates"`
		ScoreBefore float64 `json:"score_before"`
		ScoreAfter  float64 `json:"score_after"`
	}
	json.Unmarshal(res.Result, &fb)
	if !res.OK || fb.Updates != 1 || fb.ScoreAfter <= fb.ScoreBefore {
		t.Fatalf("favorite feedback: %s %+v", res.Result, res.Error)
	}
	if res := a.send("fb-2", "photo_feedback", map[string]any{"artifact_id": "nope", "signal": "favorite"}); res.OK || res.Error.Code != "not_found" {
		t.Fatalf("feedback on an unknown artifact: %+v", res)
	}
	if res := a.send("fb-3", "photo_feedback", map[string]any{"artifact_id": uploaded[1], "signal": "love"}); res.OK || res.Error.Code != "bad_request" {
		t.Fatalf("unknown signal: %+v", res)
	}
	// keep_per_day holds across selections of the same day.
	for i, p := range photos(t, 3) {
		r.drop(name("late", i), p)
	}
	r.waitSpoolEmpty(2 * time.Second)
	a.must("sel-2", "select_photos", map[string]any{})
	if ev := eventOf(t, a, "selection_done"); num(ev, "kept") != 0 || num(ev, "deleted") != 3 {
		t.Fatalf("second selection of the day: %v", ev)
	}
	r.stop()
}

func TestP4_UnackedUploadSurvivesKill9WithTheSameID(t *testing.T) {
	b := testbroker.Start(t)
	r := newRig(t, b, "photos:\n  keep_per_day: 1\n  min_score: 0\nmqtt:\n  ack_timeout: 1s\n")
	a := newApp(t, b, r.deviceID)
	cl := newCloud(t, b, a)
	r.start()
	enableAutoPhoto(a)
	r.drop("only.jpg", photos(t, 1)[0])
	r.waitSpoolEmpty(2 * time.Second)
	a.must("sel", "select_photos", map[string]any{})
	first, body := cl.receive("photo", false) // received, never acked
	r.kill()
	r.start()
	again, body2 := cl.receive("photo", true)
	if again.ArtifactID != first.ArtifactID || !bytes.Equal(body, body2) {
		t.Fatalf("resent as %s, first sent as %s", again.ArtifactID, first.ArtifactID)
	}
	a.state(func(s map[string]any) bool {
		return num(s, "photos_today", "uploaded") == 1 && num(s, "outbox", "pending") == 0
	})
	r.stop()
}

func TestP4_BrokerDownDuringUploadDeliversEverythingLater(t *testing.T) {
	b := testbroker.Start(t)
	r := newRig(t, b, "photos:\n  keep_per_day: 3\n  min_score: 0\nmqtt:\n  ack_timeout: 2s\n")
	a := newApp(t, b, r.deviceID)
	r.start()
	enableAutoPhoto(a)
	for i, p := range photos(t, 3) {
		r.drop(name("down", i), p)
	}
	r.waitSpoolEmpty(2 * time.Second)
	b.Stop()
	b.Restart(t)
	a = newApp(t, b, r.deviceID)
	cl := newCloud(t, b, a)
	a.status.WaitFor(t, 40*time.Second, func(m testbroker.Message) bool { return string(m.Payload) == "online" })
	a.must("sel", "select_photos", map[string]any{})
	// Stop the broker in the middle of the uploads, then bring it back.
	first, _ := cl.receive("photo", true)
	b.Stop()
	time.Sleep(500 * time.Millisecond)
	b.Restart(t)
	a2 := newApp(t, b, r.deviceID)
	cl2 := newCloud(t, b, a2)
	others := map[string]bool{}
	deadline := time.Now().Add(60 * time.Second)
	for len(others) < 2 && time.Now().Before(deadline) {
		if m, _ := cl2.receive("photo", true); m.ArtifactID != first.ArtifactID {
			others[m.ArtifactID] = true
		}
	}
	allUploaded := func(m testbroker.Message) bool {
		var s map[string]any
		return json.Unmarshal(m.Payload, &s) == nil && num(s, "photos_today", "uploaded") == 3 && num(s, "outbox", "pending") == 0
	}
	// The state follows an ack within 50 ms; a photo sent again meanwhile
	// waits in the cloud's subscription, so a long wait loses nothing.
	for !a2.states.WaitWithin(10*time.Second, allUploaded) {
		if time.Now().After(deadline) {
			t.Fatal("the photos were not all uploaded and acked within 60 s")
		}
		// An ack can be lost: the first photo's, published just before
		// the broker stopped. The daemon then sends that photo again (at
		// least once), and the cloud acks it again.
		cl2.receive("photo", true)
	}
	r.stop()
}

func TestP14_AutoPhotoOffMidUploadPublishesNoFurtherChunk(t *testing.T) {
	b := testbroker.Start(t)
	// Small chunks so one photo takes many messages, paced at 4 a second
	// so the upload (56 chunks) is still under way when the switch lands
	// however loaded the machine: the shipped pace (256 KiB/s) can send
	// the whole photo before the command is handled. Unstopped, 6 more
	// chunks would go in the 1.5 s the test watches.
	r := newRig(t, b, "photos:\n  keep_per_day: 1\n  min_score: 0\nmqtt:\n  chunk_size: 1024\n  max_send_rate: 4096\n  ack_timeout: 30s\n")
	a := newApp(t, b, r.deviceID)
	cl := newCloud(t, b, a)
	r.start()
	enableAutoPhoto(a)
	big, err := os.ReadFile("../../testdata/photos/rocket.jpg")
	if err != nil {
		t.Fatal(err)
	}
	r.drop("big.jpg", big)
	r.waitSpoolEmpty(2 * time.Second)
	a.must("sel", "select_photos", map[string]any{})
	var m manifest
	cl.metas.WaitFor(t, 10*time.Second, func(msg testbroker.Message) bool { return json.Unmarshal(msg.Payload, &m) == nil && m.Kind == "photo" })
	cl.parts.Next(t, 10*time.Second) // the upload is under way
	a.must("off", "set_features", map[string]any{"auto_photo": false})
	seenAtOff := len(cl.parts.All())
	time.Sleep(1500 * time.Millisecond)
	if after := len(cl.parts.All()); after > seenAtOff+1 { // at most the chunk in flight when the command landed
		t.Fatalf("%d chunks published after auto_photo went off (of %d)", after-seenAtOff, m.Chunks)
	}
	if len(cl.parts.All()) >= m.Chunks {
		t.Fatalf("the whole photo went out (%d chunks): the test proves nothing", m.Chunks)
	}
	a.state(func(s map[string]any) bool { return num(s, "outbox", "pending") == 0 })
	if n := outboxFiles(t, r); n != 0 {
		t.Fatalf("%d outbox files left after auto_photo off", n)
	}
	r.stop()
}

func TestP4_QueueFullRefusesNewPhotosAndKeepsOldOnes(t *testing.T) {
	b := testbroker.Start(t)
	r := newRig(t, b, "photos:\n  keep_per_day: 10\n  min_score: 0\nmqtt:\n  max_queue_bytes: 1048576\n")
	a := newApp(t, b, r.deviceID)
	r.start()
	enableAutoPhoto(a)
	big, _ := os.ReadFile("../../testdata/photos/rocket.jpg") // ~110 KB each after cleaning
	for i := 0; i < 14; i++ {
		r.drop(name("q", i), big)
	}
	r.waitSpoolEmpty(3 * time.Second)
	// No cloud acks anything: the queue fills up to its bound.
	a.must("sel", "select_photos", map[string]any{})
	ev := eventOf(t, a, "selection_done")
	kept := num(ev, "kept")
	if kept == 0 || kept >= 10 {
		t.Fatalf("selection kept %d with a 1 MiB queue", kept)
	}
	st := r.status()
	if bytes := num(st, "outbox", "bytes"); bytes > 1<<20 || num(st, "outbox", "pending") != kept {
		t.Fatalf("outbox %v", st["outbox"])
	}
	r.stop()
	r.start()
	if st := r.status(); num(st, "outbox", "pending") != kept {
		t.Fatalf("old queued photos lost across restart: %v", st["outbox"])
	}
	// Switching auto_photo off drops every queued photo at once, sent or not.
	a.must("off", "set_features", map[string]any{"auto_photo": false})
	if st := r.status(); num(st, "outbox", "pending") != 0 {
		t.Fatalf("queued photos survive auto_photo off: %v", st["outbox"])
	}
	if n := outboxFiles(t, r); n != 0 {
		t.Fatalf("%d outbox files left after auto_photo off", n)
	}
	r.stop()
}

func TestP3_TheUploadedPhotoOfASetIsTheCleanOne(t *testing.T) {
	b := testbroker.Start(t)
	r := newRig(t, b, "photos:\n  keep_per_day: 1\n  min_score: 0\n")
	a := newApp(t, b, r.deviceID)
	cl := newCloud(t, b, a)
	r.start()
	enableAutoPhoto(a)
	raw, err := os.ReadFile("../../testdata/score/astronaut.jpg")
	if err != nil {
		t.Fatal(err)
	}
	src, err := jpeg.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	clean := synth.RGBA(src)
	variants := map[string][]byte{
		"clean.jpg":   synth.JPEG(clean, 95),
		"blurred.jpg": synth.JPEG(synth.Blur(clean, 4), 95),
		"dark.jpg":    synth.JPEG(synth.Exposure(clean, 0.25), 95),
		"bright.jpg":  synth.JPEG(synth.Exposure(clean, 3), 95),
		"noisy.jpg":   synth.JPEG(synth.Noise(clean, 30, 7), 95),
	}
	coffee, _ := os.ReadFile("../../testdata/score/coffee.jpg")
	variants["no-people.jpg"] = coffee
	for n, data := range variants {
		r.drop(n, data)
	}
	r.waitSpoolEmpty(3 * time.Second)
	a.must("sel", "select_photos", map[string]any{})
	_, body := cl.receive("photo", true)
	up, err := jpeg.Decode(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	best, bestDiff := "", 1e9
	for n, data := range variants {
		img, err := jpeg.Decode(bytes.NewReader(data))
		if err != nil || img.Bounds() != up.Bounds() {
			continue
		}
		if d := meanDiff(up, img); d < bestDiff {
			best, bestDiff = n, d
		}
	}
	if best != "clean.jpg" {
		t.Fatalf("the upload looks most like %s", best)
	}
	if ev := eventOf(t, a, "selection_done"); num(ev, "kept") != 1 || num(ev, "deleted") != 5 {
		t.Fatalf("selection_done %v", ev)
	}
	r.stop()
}

// meanDiff is the mean absolute grey difference of two same-size images.
func meanDiff(a, b image.Image) float64 {
	var sum, n float64
	r := a.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y += 2 {
		for x := r.Min.X; x < r.Max.X; x += 2 {
			ga := color.GrayModel.Convert(a.At(x, y)).(color.Gray).Y
			gb := color.GrayModel.Convert(b.At(x, y)).(color.Gray).Y
			sum += math.Abs(float64(ga) - float64(gb))
			n++
		}
	}
	return sum / n
}
