package main

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"hash/crc32"
	"syscall"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// greyBomb is a real, valid 16-bit greyscale PNG of w x h, all black: a few
// tens of KiB on disk, w*h*2 bytes once decoded (80 MB for 8000x5000).
func greyBomb(t testing.TB, w, h int) []byte {
	t.Helper()
	var out bytes.Buffer
	out.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		binary.Write(&out, binary.BigEndian, uint32(len(data)))
		c := append([]byte(typ), data...)
		out.Write(c)
		binary.Write(&out, binary.BigEndian, crc32.ChecksumIEEE(c))
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], uint32(w))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(h))
	ihdr[8], ihdr[9] = 16, 0 // 16-bit grey
	chunk("IHDR", ihdr)
	var idat bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&idat, zlib.BestCompression)
	row := make([]byte, 1+2*w) // filter byte 0, then black pixels
	for range h {
		zw.Write(row)
	}
	zw.Close()
	chunk("IDAT", idat.Bytes())
	chunk("IEND", nil)
	return out.Bytes()
}

// Issue: an 85 KiB 16-bit PNG of 8000x5000 (under the 40 MP limit) took
// the daemon to 173 MiB through intake, selection and upload. The daemon
// now keeps photos as bytes: the worker decodes, scores and re-encodes.
// Its peak resident memory stays under 64 MiB while the bomb is admitted,
// selected and uploaded.
func TestP16_AHostileImageDoesNotGrowTheDaemon(t *testing.T) {
	b := testbroker.Start(t)
	r := newRig(t, b, "photos:\n  min_score: 0\n")
	a := newApp(t, b, r.deviceID)
	cl := newCloud(t, b, a)
	r.start()
	enableAutoPhoto(a)
	bomb := greyBomb(t, 8000, 5000)
	if len(bomb) > 200<<10 {
		t.Fatalf("the bomb is %d KiB: not the small file the issue describes", len(bomb)>>10)
	}
	r.drop("bomb.png", bomb)
	r.waitSpoolEmpty(10 * time.Second)
	if c := r.today(); c.Admitted != 1 {
		t.Fatalf("the 40-MP PNG was not admitted (%+v): the test exercises nothing", c)
	}
	a.must("sel", "select_photos", map[string]any{})
	eventOf(t, a, "selection_done")
	if m, body := cl.receive("photo", true); m.Kind != "photo" || len(body) == 0 {
		t.Fatalf("the photo was not uploaded: %+v", m)
	}
	if hwm := peakRSS(t, r.cmd.Process.Pid); hwm > 64<<20 {
		t.Fatalf("the daemon's peak RSS reached %d MiB, over 64", hwm>>20)
	} else {
		t.Logf("daemon peak RSS %d MiB", hwm>>20)
	}
	r.stop()
}

// BenchmarkHostileSpoolPeakRSS reports the daemon's peak resident memory
// (the binary as shipped, no race detector) after a 16-bit 8000x5000 PNG
// of a few tens of KiB was admitted, selected, re-encoded and uploaded.
//
//	go test -run '^$' -bench HostileSpoolPeakRSS -benchtime 3x ./cmd/aibo-privacyd/
func BenchmarkHostileSpoolPeakRSS(b *testing.B) {
	br := testbroker.Start(b)
	bomb := greyBomb(b, 8000, 5000)
	worst := 0
	for i := 0; i < b.N; i++ {
		r := newBenchRig(b, br)
		cmd := benchStart(b, r, "photos:\n  min_score: 0\nvision:\n  face_models_dir: "+faceModels+"\n")
		c := br.Client(b)
		events := c.Subscribe(b, "aibo/bench/events")
		send := benchSend(b, c)
		send("acc", "accept_policy", `{"version":"v1"}`)
		send("on", "set_features", `{"auto_photo":true}`)
		benchDrop(b, r, map[string][]byte{"bomb.png": bomb}, 20*time.Second)
		send("sel", "select_photos", `{}`)
		events.WaitFor(b, 60*time.Second, func(m testbroker.Message) bool { return bytes.Contains(m.Payload, []byte(`"selection_done"`)) })
		if hwm := procKB(b, cmd.Process.Pid, "VmHWM:"); hwm > worst {
			worst = hwm
		}
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}
	b.ReportMetric(float64(worst)/1024, "peak-RSS-MiB")
}
