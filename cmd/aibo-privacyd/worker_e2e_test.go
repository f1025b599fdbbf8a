package main

import (
	"bytes"
	"encoding/json"
	"image"
	"image/jpeg"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/capture/clean"
	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
	"github.com/aibo-privacy/aibo-privacyd/vision"
)

// bigPhoto is a w x h JPEG with grain everywhere (a re-encoded 12 MP copy
// weighs several MiB, far past the 768 KiB the old base64 answer held).
func bigPhoto(t testing.TB, w, h int, grain int) []byte {
	t.Helper()
	img := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	r := rand.New(rand.NewSource(int64(w)))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			v := (x*255/w+y*255/h)/2 + r.Intn(2*grain+1) - grain
			img.Y[img.YOffset(x, y)] = uint8(max(0, min(255, v)))
		}
	}
	for i := range img.Cb {
		img.Cb[i], img.Cr[i] = uint8(100+i%40), uint8(140-i%30)
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 85}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// Issue 22: every admitted photo can leave. A 12-megapixel best shot
// reaches the cloud at its own size, a 40-megapixel one scaled to 12
// megapixels, with blurring off and on: the cleaned photo streams from the
// worker through the outbox's file as the answer's blob (it used to travel
// base64 in a 1 MiB header, and over 768 KiB it was deleted not_cleaned).
func TestP4_A12MegapixelBestShotLeavesAtItsOwnSizeA40MegapixelOneAt12(t *testing.T) {
	twelve, forty := bigPhoto(t, 4000, 3000, 24), bigPhoto(t, 8000, 5000, 6)
	w40, h40 := clean.UploadSize(8000, 5000)
	for _, blur := range []bool{false, true} {
		t.Run(map[bool]string{false: "blur off", true: "blur on"}[blur], func(t *testing.T) {
			b := testbroker.Start(t)
			r := newRig(t, b, "photos:\n  keep_per_day: 2\n  min_score: 0\n")
			a := newApp(t, b, r.deviceID)
			cl := newCloud(t, b, a)
			r.start()
			enableAutoPhoto(a)
			if blur {
				a.must("blur-1", "set_features", map[string]any{"blur_unknown_faces": true})
			}
			r.drop("twelve.jpg", twelve)
			r.drop("forty.jpg", forty)
			r.waitSpoolEmpty(60 * time.Second)
			if c := r.today(); c.Admitted != 2 {
				t.Fatalf("photos_today %+v: both photos should be admitted", c)
			}
			a.must("sel-1", "select_photos", map[string]any{})
			var ev map[string]any
			a.events.WaitFor(t, 180*time.Second, func(m testbroker.Message) bool {
				return strings.Contains(string(m.Payload), `"selection_done"`) && jsonInto(m.Payload, &ev)
			})
			if num(ev, "kept") != 2 || num(ev, "deleted") != 0 {
				t.Fatalf("selection_done %v: a photo was not kept", ev)
			}
			sizes := map[[2]int]int{}
			for range 2 {
				m, body := cl.receive("photo", true)
				cfg, err := jpeg.DecodeConfig(bytes.NewReader(body))
				if err != nil {
					t.Fatalf("upload %s is no JPEG: %v", m.ArtifactID, err)
				}
				sizes[[2]int{cfg.Width, cfg.Height}] = len(body)
				for _, mk := range clean.Markers(body) {
					if mk >= 0xE0 && mk <= 0xEF || mk == 0xFE {
						t.Fatalf("upload carries marker %#x", mk)
					}
				}
			}
			if n, ok := sizes[[2]int{4000, 3000}]; !ok || n <= 768<<10 {
				t.Errorf("uploads %v: the 12 MP photo did not leave at its own size, or not past the old 768 KiB", sizes)
			}
			if _, ok := sizes[[2]int{w40, h40}]; !ok {
				t.Errorf("uploads %v: the 40 MP photo did not leave scaled to %dx%d", sizes, w40, h40)
			}
			a.state(func(s map[string]any) bool { return num(s, "outbox", "pending") == 0 })
			if vs := r.status()["vision"].(map[string]any); vs["state"] != "confined" {
				t.Errorf("status vision %v", vs)
			}
			r.stop()
		})
	}
}

func jsonInto(raw []byte, v *map[string]any) bool { return json.Unmarshal(raw, v) == nil }

// Issue 21: where the kernel has no Landlock, no worker runs: nothing is
// analysed (a photo waits in the spool, neither admitted nor judged
// invalid), the daemon keeps running, and status and metrics say why
// instead of "sandboxed".
func TestP16_WithoutLandlockNoWorkerRunsAndStatusSaysWhy(t *testing.T) {
	if vision.LandlockABI() == 0 {
		t.Fatal("this kernel has no Landlock at all: the test hides it, it needs it to hide")
	}
	b := testbroker.Start(t)
	r := newRig(t, b, "")
	r.noLandlock = true
	a := newApp(t, b, r.deviceID)
	r.start()
	enableAutoPhoto(a)
	var vs map[string]any
	for deadline := time.Now().Add(10 * time.Second); ; {
		vs, _ = r.status()["vision"].(map[string]any)
		if vs["state"] == "refused" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status vision %v: want refused", vs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if why, _ := vs["refused"].(string); !strings.Contains(why, "Landlock") {
		t.Errorf("status says refused for %q, not for want of Landlock", why)
	}
	if layers, _ := vs["layers"].(map[string]any); layers["landlock"] != nil || layers["seccomp"] != nil {
		t.Errorf("status names layers not in force: %v", layers)
	}
	r.drop("waits.jpg", photos(t, 1)[0])
	time.Sleep(3 * time.Second)
	if c := r.today(); c.Admitted != 0 || c.Invalid != 0 || r.spoolCount() != 1 {
		t.Fatalf("photos_today %+v, spool %d: the photo was judged without a worker", c, r.spoolCount())
	}
	text, _ := r.ctl("metrics")
	for _, want := range []string{"aibo_vision_confined 0", "aibo_vision_worker_starts_total 0"} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(r.logs.String(), "sandboxed") {
		t.Error("the log says sandboxed")
	}
	r.stop()
}
