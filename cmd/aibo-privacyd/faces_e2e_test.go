package main

import (
	"bytes"
	"encoding/json"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/capture/score/synth"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
	"github.com/aibo-privacy/aibo-privacyd/internal/pgm"
	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// orl reads one of the committed ORL faces (92x112 grey PGM).
func orl(t *testing.T, person string, n int) *image.Gray {
	t.Helper()
	f, err := os.Open(filepath.Join("../../testdata/faces", "orl-"+person+"-"+strconv.Itoa(n)+".pgm"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g, err := pgm.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// scene is a 1280x720 camera frame with the faces side by side, each
// tripled (as people a couple of metres from the robot) with its edge
// pixels carried 60 px outwards, as a scene continues around a head (the
// frames of the protocol, scripts/facequality).
func scene(faces ...*image.Gray) (*image.RGBA, []image.Rectangle) {
	const m = 60
	img := image.NewRGBA(image.Rect(0, 0, 1280, 720))
	draw.Draw(img, img.Bounds(), &image.Uniform{color.Gray{Y: 60}}, image.Point{}, draw.Src)
	var boxes []image.Rectangle
	for k, f := range faces {
		w, h := f.Rect.Dx()*3, f.Rect.Dy()*3
		at := image.Pt(150+450*k, 190)
		for y := -m; y < h+m; y++ {
			for x := -m; x < w+m; x++ {
				yy, xx := min(max(y, 0), h-1), min(max(x, 0), w-1)
				v := f.Pix[(yy/3)*f.Stride+xx/3]
				i := img.PixOffset(at.X+x, at.Y+y)
				img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = v, v, v, 255
			}
		}
		boxes = append(boxes, image.Rect(at.X, at.Y, at.X+w, at.Y+h))
	}
	return img, boxes
}

func encodePNG(t *testing.T, img image.Image) []byte {
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// enrol shows the camera frames of images 1-3 of an ORL person, over
// again as the robot sees a person in many frames, until the enrollment
// of id completes: a frame in which the detector finds no face gives no
// sample, as on the robot.
func enrol(t *testing.T, r *rig, a *app, id, orlID string) {
	t.Helper()
	done := func() bool {
		for _, m := range a.events.All() {
			var e map[string]any
			if json.Unmarshal(m.Payload, &e) == nil && e["type"] == "enrollment_completed" && e["subject_id"] == id {
				return true
			}
		}
		return false
	}
	for round := 0; round < 3; round++ {
		for n := 1; n <= 3; n++ {
			img, _ := scene(orl(t, orlID, n))
			r.dropFrame(id+strconv.Itoa(round)+strconv.Itoa(n)+".png", encodePNG(t, img))
		}
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if done() {
				return
			}
		}
	}
	t.Fatalf("enrollment of %s did not complete", id)
}

// dropFrame writes a frame the way the camera does and waits until the
// daemon took it (frames must be gone within 2 s).
func (r *rig) dropFrame(name string, data []byte) {
	r.t.Helper()
	dir := filepath.Join(r.spool, "frames")
	tmp := filepath.Join(dir, "."+name+".part")
	os.WriteFile(tmp, data, 0o644)
	os.Rename(tmp, filepath.Join(dir, name))
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Join(dir, name)); os.IsNotExist(err) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.t.Fatalf("frame %s still in the spool after 2 s", name)
}

// detail is the mean absolute difference between horizontal neighbours
// inside r: what pixelation removes.
func detail(img image.Image, r image.Rectangle) float64 {
	var sum, n float64
	grey := func(x, y int) float64 { return float64(color.GrayModel.Convert(img.At(x, y)).(color.Gray).Y) }
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X-1; x++ {
			sum += math.Abs(grey(x+1, y) - grey(x, y))
			n++
		}
	}
	return sum / n
}

func TestP5_P6_P7_FacesEnrolRecogniseAndForget(t *testing.T) {
	b := testbroker.Start(t)
	r := newRig(t, b, "faces:\n  enrollment_samples: 3\n  sighting_interval: 0s\nphotos:\n  keep_per_day: 1\n  min_score: 0\n")
	a := newApp(t, b, r.deviceID)
	cl := newCloud(t, b, a)
	r.start()
	a.must("acc", "accept_policy", map[string]any{"version": "v1"})
	a.must("feat", "set_features", map[string]any{"patrol": true, "auto_photo": true, "blur_unknown_faces": true})

	// Refusals first: no consent; a minor without a guardian.
	if res := a.send("e0", "start_enrollment", map[string]any{"subject_id": "alice"}); res.OK || res.Error.Code != "consent_required" {
		t.Fatalf("enrollment without consent: %+v", res)
	}
	if res := a.send("g0", "grant_consent", map[string]any{"subject_id": "kid", "display_name": "Kid", "minor": true, "granted_by": "self", "scopes": []string{"face_recognition"}}); res.OK || res.Error.Code != "guardian_required" {
		t.Fatalf("minor without guardian: %+v", res)
	}

	people := map[string]string{"alice": "s2", "bob": "s7"}
	for id, orlID := range people {
		a.must("g-"+id, "grant_consent", map[string]any{"subject_id": id, "display_name": "Person " + id, "granted_by": "self", "scopes": []string{"face_recognition"}})
		a.must("e-"+id, "start_enrollment", map[string]any{"subject_id": id})
		enrol(t, r, a, id, orlID)
	}

	// New frames: both are recognised; strangers are not. (The frame that
	// completed an enrollment was already recognised: Patrol is on.)
	for id, orlID := range people {
		img, _ := scene(orl(t, orlID, 4))
		r.dropFrame("probe-"+id+".png", encodePNG(t, img))
		deadline := time.Now().Add(10 * time.Second)
		for {
			m, body := cl.receive("sighting", true)
			if m.SubjectID == id && strings.Contains(string(body), `"subject_id":"`+id+`"`) && strings.Contains(string(body), "confidence") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no sighting for %s", id)
			}
		}
	}
	time.Sleep(500 * time.Millisecond)
	sightingsBefore := len(cl.metas.All())
	before := faceRecords(t, r)
	for _, s := range []struct {
		p string
		n int
	}{{"s30", 1}, {"s30", 6}, {"s12", 1}} {
		img, _ := scene(orl(t, s.p, s.n))
		r.dropFrame("stranger-"+s.p+strconv.Itoa(s.n)+".png", encodePNG(t, img))
	}
	time.Sleep(1500 * time.Millisecond)
	for _, msg := range cl.metas.All() {
		var m manifest
		json.Unmarshal(msg.Payload, &m)
		if m.Kind == "sighting" && m.SubjectID != "alice" && m.SubjectID != "bob" {
			t.Fatalf("a stranger produced a sighting: %+v", m)
		}
	}
	if n := len(cl.metas.All()); n != sightingsBefore {
		t.Fatalf("%d artifacts after strangers passed", n-sightingsBefore)
	}
	if after := faceRecords(t, r); after != before {
		t.Fatalf("strangers left %d face records behind", after-before)
	}

	// Blur: a photo of Bob with a stranger goes out with the stranger's face
	// pixelated and Bob's intact.
	photo, boxes := scene(orl(t, "s7", 4), orl(t, "s30", 6))
	var jp bytes.Buffer
	jpeg.Encode(&jp, photo, &jpeg.Options{Quality: 95})
	r.drop("together.jpg", jp.Bytes())
	r.waitSpoolEmpty(2 * time.Second)
	a.must("sel", "select_photos", map[string]any{})
	_, body := cl.receive("photo", true)
	up, err := jpeg.Decode(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	bob, stranger := boxes[0].Inset(30), boxes[1].Inset(30)
	if got, was := detail(up, bob), detail(photo, bob); got < 0.7*was {
		t.Fatalf("the enrolled face lost its detail: %.2f, was %.2f", got, was)
	}
	if got, was := detail(up, stranger), detail(photo, stranger); got > 0.25*was {
		t.Fatalf("the stranger's face kept its detail: %.2f, was %.2f", got, was)
	}

	// Alice withdraws: nothing of her is left, the cloud is asked to erase,
	// and she is not recognised any more.
	a.must("rv", "revoke_consent", map[string]any{"subject_id": "alice"})
	ev := eventOf(t, a, "erase_request")
	if ev["subject_id"] != "alice" {
		t.Fatalf("erase_request %v", ev)
	}
	seenAlice := func() int {
		n := 0
		for _, msg := range cl.metas.All() {
			var m manifest
			json.Unmarshal(msg.Payload, &m)
			if m.Kind == "sighting" && m.SubjectID == "alice" {
				n++
			}
		}
		return n
	}
	beforeRevoke := seenAlice()
	img, _ := scene(orl(t, "s2", 4))
	r.dropFrame("alice-again.png", encodePNG(t, img))
	img, _ = scene(orl(t, "s7", 3))
	r.dropFrame("bob-again.png", encodePNG(t, img))
	if m, _ := cl.receive("sighting", true); m.SubjectID != "bob" {
		t.Fatalf("after revoking alice, the next sighting is of %s", m.SubjectID)
	}
	if seenAlice() != beforeRevoke {
		t.Fatal("alice sighted after revoking")
	}
	r.stop()
	if keys := keysMentioning(t, r, "alice"); len(keys) != 0 {
		t.Fatalf("the store still holds %v about alice", keys)
	}
	if keys := keysMentioning(t, r, "bob"); len(keys) == 0 {
		t.Fatal("bob's records vanished too: the check reads nothing")
	}
	// What bbolt's free pages may still hold of alice was sealed by her
	// identity and face keys' slots; only bob's two are left.
	if n := keyringSlots(t, r); n != 2 {
		t.Fatalf("%d occupied keyring slots after alice's revocation, want 2 (bob's identity and face keys)", n)
	}
}

// keyringSlots counts the occupied (non-zero) slots of people.keys.
func keyringSlots(t *testing.T, r *rig) int {
	raw, err := os.ReadFile(filepath.Join(r.dataDir, "people.keys"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for o := 0; o+32 <= len(raw); o += 32 {
		if !bytes.Equal(raw[o:o+32], make([]byte, 32)) {
			n++
		}
	}
	return n
}

// faceRecords counts the records of the faces bucket.
func faceRecords(t *testing.T, r *rig) int {
	out, _ := r.ctl("inventory", "--json")
	var inv struct {
		Categories map[string]struct{ Count int } `json:"categories"`
	}
	json.Unmarshal([]byte(out), &inv)
	return inv.Categories["faces"].Count + inv.Categories["sightings"].Count
}

// keysMentioning lists every key of the subjects and faces buckets (and the
// outbox) that names subject, read from the bbolt file directly.
func keysMentioning(t *testing.T, r *rig, subject string) []string {
	db, err := bolt.Open(filepath.Join(r.dataDir, "state.db"), 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var out []string
	db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{store.BucketSubjects, store.BucketFaces, store.BucketOutbox} {
			var walk func(b *bolt.Bucket, prefix string)
			walk = func(b *bolt.Bucket, prefix string) {
				b.ForEach(func(k, v []byte) error {
					if v == nil {
						walk(b.Bucket(k), prefix+string(k)+"/")
						return nil
					}
					if strings.Contains(string(k), subject) || strings.Contains(string(v), `"`+subject+`"`) {
						out = append(out, prefix+string(k))
					}
					return nil
				})
			}
			if b := tx.Bucket(name); b != nil {
				walk(b, string(name)+"/")
			}
		}
		return nil
	})
	return out
}

// TestP7_ASoftCloseUpGoesOutBlurred (issue 19): a face that fills the
// photo but is not sharp (a 64 px GENKI-4K face blown up to 512 px, as an
// old small photo or a blurred close-up gives) is a stranger's face like
// any other: with blur_unknown_faces on it leaves pixelated. Before, the
// worker's detector missed such faces and the photo went up in the clear,
// although the scorer counted a face in it.
func TestP7_ASoftCloseUpGoesOutBlurred(t *testing.T) {
	b := testbroker.Start(t)
	r := newRig(t, b, "photos:\n  keep_per_day: 1\n  min_score: 0\n")
	a := newApp(t, b, r.deviceID)
	cl := newCloud(t, b, a)
	r.start()
	a.must("acc", "accept_policy", map[string]any{"version": "v1"})
	a.must("feat", "set_features", map[string]any{"auto_photo": true, "blur_unknown_faces": true})

	f, err := os.Open("../../testdata/photos/genki-smile-file1563.jpg")
	if err != nil {
		t.Fatal(err)
	}
	small, err := jpeg.Decode(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	photo := synth.Resize(small, 512, 512)
	r.drop("closeup.jpg", synth.JPEG(photo, 95))
	r.waitSpoolEmpty(2 * time.Second)
	a.must("sel", "select_photos", map[string]any{})
	_, body := cl.receive("photo", true)
	up, err := jpeg.Decode(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	// The middle of the face: eyes, nose and mouth.
	face := image.Rect(128, 128, 384, 420)
	if got, was := detail(up, face), detail(photo, face); got > 0.4*was {
		t.Fatalf("the soft close-up went up with its face's detail: %.2f, was %.2f", got, was)
	}
}
