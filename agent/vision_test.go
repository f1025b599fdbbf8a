package agent

import (
	"os"
	"testing"

	"github.com/aibo-privacy/aibo-privacyd/capture/clean"
	"github.com/aibo-privacy/aibo-privacyd/config"
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
