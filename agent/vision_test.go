package agent

import (
	"os"
	"regexp"
	"slices"
	"testing"

	"github.com/aibo-privacy/aibo-privacyd/capture/clean"
	"github.com/aibo-privacy/aibo-privacyd/config"
	"github.com/aibo-privacy/aibo-privacyd/vision"
)

// Issue 22: every admitted photo can leave. The upload queue must hold a
// day's keep_per_day photos at 12 megapixels, each at the bound its clean
// answer may reach, or the last of a day's best shots are deleted as
// queue_full while the first wait for the cloud.
func TestTheDefaultQueueHoldsADaysPhotos(t *testing.T) {
	w, h := clean.UploadSize(4000, 3000)
	day := int64(0)
	check := func(name string, c config.Config) {
		day = int64(c.Photos.KeepPerDay) * clean.MaxBytes(w, h)
		if c.MQTT.MaxQueueBytes < day+16<<20 {
			t.Errorf("%s: max_queue_bytes %d holds less than a day's %d photos at 12 MP (%d bytes) and 16 MiB besides",
				name, c.MQTT.MaxQueueBytes, c.Photos.KeepPerDay, day)
		}
	}
	check("default", config.Default())
	for _, f := range []string{"../packaging/config.yaml"} {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		c, err := config.Parse(raw)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		check(f, c)
	}
}

// The self-test's models check reads the cascades the worker loads, and
// only those (capture/score names them; agent cannot import it, since it
// links OpenCV): it checked the smile cascade, which nothing loads, and
// not the LBP detector or alt2, without which no worker starts.
func TestSelftestChecksTheCascadesTheWorkerLoads(t *testing.T) {
	src, err := os.ReadFile("../capture/score/score.go")
	if err != nil {
		t.Fatal(err)
	}
	var loads []string
	for _, m := range regexp.MustCompile(`(?m)^\s*\w+Cascade\s*=\s*"([^"]+)"`).FindAllStringSubmatch(string(src), -1) {
		loads = append(loads, m[1])
	}
	if len(loads) == 0 {
		t.Fatal("no cascade constants found in capture/score/score.go")
	}
	slices.Sort(loads)
	checked := slices.Sorted(slices.Values(cascades))
	if !slices.Equal(loads, checked) {
		t.Errorf("the self-test checks %v; the worker loads %v", checked, loads)
	}
}

// A taken-over worker's validation cannot write words of its own into the
// photo record: only jpeg or png, and dimensions within the spool's bound.
func TestP16_AWorkersValidationCannotWriteIntoThePhotoRecord(t *testing.T) {
	for _, r := range []vision.ValidateResult{
		{Format: "jpeg; ana 1990-03-01", Width: 640, Height: 480},
		{Format: "", Width: 640, Height: 480},
		{Format: "png", Width: 0, Height: 480},
		{Format: "jpeg", Width: 1 << 20, Height: 1 << 20},
	} {
		if info, err := validatedInfo(r); err == nil {
			t.Errorf("%+v kept as %+v", r, info)
		}
	}
	if info, err := validatedInfo(vision.ValidateResult{Format: "png", Width: 640, Height: 480}); err != nil || info.Format != "png" || info.Width != 640 {
		t.Errorf("a plain png: %+v %v", info, err)
	}
}
