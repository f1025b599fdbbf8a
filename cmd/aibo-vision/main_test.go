package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/capture/clean"
	"github.com/aibo-privacy/aibo-privacyd/capture/score"
	"github.com/aibo-privacy/aibo-privacyd/internal/facenet"
	"github.com/aibo-privacy/aibo-privacyd/internal/testlog"
	"github.com/aibo-privacy/aibo-privacyd/vision"
)

// The test binary doubles as the worker: with workerEnv set it runs main's
// run, OpenCV and all, so the tests exercise the real protocol end to end.
const workerEnv = "AIBO_VISION_TEST_WORKER"

func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) == "1" {
		os.Exit(run(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// client runs the worker with the face nets of make setup; args come after
// (a later flag wins).
func client(t *testing.T, args ...string) *vision.Client {
	t.Helper()
	abs, err := filepath.Abs(faceModels)
	if err != nil {
		t.Fatal(err)
	}
	if err := facenet.Check(abs); err != nil {
		t.Fatalf("%v\nrun make setup: it fetches face-api and converts its nets into build/models", err)
	}
	c := vision.NewClient(vision.Config{
		Path:           os.Args[0],
		Args:           append([]string{"-face-models", abs}, args...),
		Env:            append(vision.DefaultEnv, workerEnv+"=1", "GORACE=atexit_sleep_ms=0"),
		RequestTimeout: 60 * time.Second, // -race makes OpenCV slow
		StartTimeout:   60 * time.Second,
		IdleTimeout:    -1,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

func photo(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../../testdata/score", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWorkerScores(t *testing.T) {
	c := client(t)
	pong, err := c.Ping(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if pong.Protocol != vision.ProtocolVersion || len(pong.Ops) < 2 {
		t.Fatalf("pong %+v", pong)
	}
	taken := time.Date(2026, 5, 1, 14, 0, 0, 0, time.FixedZone("PDT", -7*3600))
	face, err := c.Score(context.Background(), vision.Score{Image: photo(t, "astronaut.jpg"), TakenAt: taken})
	if err != nil {
		t.Fatal(err)
	}
	if len(face.Faces) != 1 || face.Width != 400 || face.Height != 400 || face.PHash == 0 {
		t.Fatalf("result %+v", face)
	}
	if face.Breakdown["time_of_day"] != 1 || face.Faces[0].Smile < 0.5 {
		t.Errorf("breakdown %v faces %+v", face.Breakdown, face.Faces)
	}
	scene, err := c.Score(context.Background(), vision.Score{Image: photo(t, "coffee.jpg"), TakenAt: taken})
	if err != nil {
		t.Fatal(err)
	}
	if scene.Score >= face.Score || len(scene.Faces) != 0 {
		t.Errorf("scene %.3f (faces %d) vs portrait %.3f", scene.Score, len(scene.Faces), face.Score)
	}
}

// TestWorkerRefusesBadImages: bad bytes come back as errors from a worker
// that stays up.
func TestWorkerRefusesBadImages(t *testing.T) {
	c := client(t)
	good := photo(t, "astronaut.jpg")
	for _, bad := range [][]byte{nil, []byte("not an image"), good[:len(good)/2], []byte("\x89PNG\r\n\x1a\n")} {
		_, err := c.Score(context.Background(), vision.Score{Image: bad})
		var re *vision.RemoteError
		if !errors.As(err, &re) {
			t.Fatalf("err = %v, want a RemoteError", err)
		}
	}
	if _, err := c.Score(context.Background(), vision.Score{Image: good}); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Starts != 1 || st.Crashes != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestWorkerBadModelDir(t *testing.T) {
	c := client(t, "-models", t.TempDir())
	_, err := c.Ping(context.Background())
	if !errors.Is(err, vision.ErrStart) {
		t.Fatalf("err = %v, want ErrStart", err)
	}
}

// TestWorkerRefusesBrokenFaceModels: a truncated model (a power cut during
// an update) or a missing checksum list stops the worker with a clear
// error before OpenCV, which aborts on a malformed model, parses it.
func TestWorkerRefusesBrokenFaceModels(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(dir string) error
	}{
		{"truncated", func(dir string) error {
			p := filepath.Join(dir, facenet.DescriptorFile)
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(p, b[:len(b)/2], 0o644)
		}},
		{"no checksums", func(dir string) error { return os.Remove(filepath.Join(dir, facenet.SumsFile)) }},
		{"proposal net replaced", func(dir string) error {
			// Another net of the same shape (a stale build of ours): the
			// same size, other weights.
			p := filepath.Join(dir, facenet.ProposalsFile)
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b[len(b)-40] ^= 0x55
			return os.WriteFile(p, b, 0o644)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range []string{facenet.DetectorFile, facenet.LandmarksFile, facenet.ExpressionsFile, facenet.DescriptorFile, facenet.ProposalsFile, facenet.SumsFile} {
				b, err := os.ReadFile(filepath.Join(faceModels, f))
				if err != nil {
					t.Fatalf("%v\nrun make setup", err)
				}
				if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := tc.spoil(dir); err != nil {
				t.Fatal(err)
			}
			if _, err := facenet.Load(dir); !errors.Is(err, facenet.ErrModels) {
				t.Fatalf("Load: %v, want ErrModels", err)
			}
			var log testlog.Buffer
			c := vision.NewClient(vision.Config{Path: os.Args[0], Args: []string{"-face-models", dir},
				Env: append(vision.DefaultEnv, workerEnv+"=1", "GORACE=atexit_sleep_ms=0"), StartTimeout: time.Minute, RequestTimeout: time.Minute, IdleTimeout: -1, Stderr: &log})
			defer c.Close()
			// A missing list stops the start; a corrupt model (found while
			// loading, after the handshake) the first request.
			_, err := c.Faces(context.Background(), vision.Faces{Image: photo(t, "coffee.jpg")})
			if !errors.Is(err, vision.ErrStart) && !errors.Is(err, vision.ErrCrashed) {
				t.Fatalf("err = %v, want ErrStart or ErrCrashed", err)
			}
			if !strings.Contains(log.String(), "face models") {
				t.Errorf("the worker's log does not say why:\n%s", log.String())
			}
		})
	}
}

// BenchmarkColdStart builds the worker as it ships (no -race, no test
// framework) and measures spawn to first answer, and spawn to the first
// scored photo, against TARGETS.md's 200 ms:
//
//	go test -run '^$' -bench ColdStart -benchtime 20x ./cmd/aibo-vision/
func BenchmarkColdStart(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "aibo-vision")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	img, err := os.ReadFile("../../testdata/score/astronaut.jpg")
	if err != nil {
		b.Fatal(err)
	}
	abs, err := filepath.Abs(faceModels)
	if err != nil {
		b.Fatal(err)
	}
	var ping, first []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := vision.NewClient(vision.Config{Path: bin, Args: []string{"-face-models", abs}, IdleTimeout: -1})
		t0 := time.Now()
		if _, err := c.Ping(context.Background()); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := c.Score(context.Background(), vision.Score{Image: img}); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		c.Close()
		ping = append(ping, t1.Sub(t0))
		first = append(first, t2.Sub(t0))
	}
	b.StopTimer()
	med := func(d []time.Duration) float64 {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return float64(d[len(d)/2].Microseconds()) / 1000
	}
	b.ReportMetric(med(ping), "ready-ms")
	b.ReportMetric(med(first), "first-score-ms")
}

// BenchmarkWorkerMemory builds the worker as it ships and reports its
// resident memory idle (models loaded, one small request answered) and its
// peak after a 1280x720 frame with a face (Patrol and thorough) and a
// 40-megapixel photo scored and searched for faces, the largest admitted:
//
//	go test -run '^$' -bench WorkerMemory -benchtime 3x ./cmd/aibo-vision/
func BenchmarkWorkerMemory(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "aibo-vision")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	abs, err := filepath.Abs(faceModels)
	if err != nil {
		b.Fatal(err)
	}
	frame := frame720(b, orlFace(b, "s2", 4), 0)
	big := image.NewGray(image.Rect(0, 0, 7300, 5450)) // 39.8 megapixels
	for i := range big.Pix {
		big.Pix[i] = uint8(i*7 + i/7300)
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, big, &jpeg.Options{Quality: 80}); err != nil {
		b.Fatal(err)
	}
	var idle, peak float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := vision.NewClient(vision.Config{Path: bin, Args: []string{"-face-models", abs}, IdleTimeout: -1, RequestTimeout: time.Minute})
		ctx := context.Background()
		if _, err := c.Faces(ctx, vision.Faces{Image: photo(b, "coffee.jpg")}); err != nil {
			b.Fatal(err)
		}
		pid := c.Stats().PID
		idle = max(idle, procMB(b, pid, "VmRSS:"))
		for _, req := range []vision.Faces{{Image: frame}, {Image: frame, Thorough: true}, {Image: buf.Bytes(), Thorough: true}} {
			if _, err := c.Faces(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := c.Score(ctx, vision.Score{Image: buf.Bytes()}); err != nil {
			b.Fatal(err)
		}
		peak = max(peak, procMB(b, pid, "VmHWM:"))
		c.Close()
	}
	b.StopTimer()
	b.ReportMetric(idle, "idle-RSS-MB")
	b.ReportMetric(peak, "peak-RSS-MB")
}

// procMB reads a kB field of /proc/PID/status in MB.
func procMB(b *testing.B, pid int, field string) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field {
			kb, err := strconv.Atoi(f[1])
			if err != nil {
				b.Fatal(err)
			}
			return float64(kb) / 1024
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// BenchmarkPhotoAlone measures what a worker of its own costs a photo
// about to leave (issue 21: vision.Client.Alone): its faces searched
// thoroughly and the photo re-encoded, by the worker as it ships started
// through the daemon's launcher (Landlock, the filter, its namespaces),
// in a fresh worker each time ("alone") and in one that stays up
// ("warm"). The difference is the start-up a photo pays, at most
// keep_per_day times a day.
//
//	go test -run '^$' -bench PhotoAlone -benchtime 10x ./cmd/aibo-vision/
func BenchmarkPhotoAlone(b *testing.B) {
	dir := b.TempDir()
	for _, pkg := range []string{".", "../aibo-privacyd"} {
		if out, err := exec.Command("go", "build", "-o", dir+"/", pkg).CombinedOutput(); err != nil {
			b.Fatalf("build %s: %v\n%s", pkg, err, out)
		}
	}
	abs, err := filepath.Abs(faceModels)
	if err != nil {
		b.Fatal(err)
	}
	worker := filepath.Join(dir, "aibo-vision")
	for _, size := range []image.Point{{1280, 720}, {4000, 3000}} {
		img := image.NewRGBA(image.Rect(0, 0, size.X, size.Y))
		for i := range img.Pix {
			img.Pix[i] = uint8(i*7 + i/size.X*13)
		}
		var photo bytes.Buffer
		jpeg.Encode(&photo, img, &jpeg.Options{Quality: 85})
		prepare := func(ctx context.Context, c *vision.Client) error {
			f, err := c.Faces(ctx, vision.Faces{Image: photo.Bytes(), Thorough: true, BoxesOnly: true})
			if err != nil {
				return err
			}
			var hide []vision.Box
			for _, x := range f.Faces {
				hide = append(hide, vision.Box{X: x.X, Y: x.Y, W: x.W, H: x.H})
			}
			_, err = c.Clean(ctx, vision.Clean{Image: photo.Bytes(), Hide: hide, Width: size.X, Height: size.Y, MaxBytes: clean.MaxBytes(size.X, size.Y)}, io.Discard)
			return err
		}
		for _, alone := range []bool{false, true} {
			b.Run(fmt.Sprintf("%dx%d/%s", size.X, size.Y, map[bool]string{false: "warm", true: "alone"}[alone]), func(b *testing.B) {
				c := vision.NewClient(vision.Config{Path: worker, Args: []string{"-face-models", abs}, IdleTimeout: -1,
					RequestTimeout: time.Minute, Launcher: filepath.Join(dir, "aibo-privacyd"),
					Sandbox: vision.Sandbox{Read: append([]string{worker, score.DefaultModelDir, abs}, vision.SystemReadPaths...)}})
				defer c.Close()
				if err := prepare(context.Background(), c); err != nil { // warm up (and load the nets)
					b.Fatal(err)
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					var err error
					if alone {
						err = c.Alone(context.Background(), func(ctx context.Context) error { return prepare(ctx, c) })
					} else {
						err = prepare(context.Background(), c)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				if conf := c.Confinement(); !conf.Confined() {
					b.Fatalf("the worker ran unconfined: %+v", conf)
				}
			})
		}
	}
}
