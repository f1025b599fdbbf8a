package main

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	_ "image/jpeg"
	_ "image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/facerec/descriptor"
	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
	"github.com/aibo-privacy/aibo-privacyd/vision"
)

// hostileMode is set when the daemon started this test binary as its
// vision worker: vision.worker names the binary, and face_models_dir a
// folder whose name says how to misbehave ("hostile-flood" or
// "hostile-claims"). The worker's environment is the daemon's choice,
// its arguments the only channel.
func hostileMode() string {
	for i, a := range os.Args {
		if a == "-face-models" && i+1 < len(os.Args) {
			if base := filepath.Base(os.Args[i+1]); strings.HasPrefix(base, "hostile-") {
				return base
			}
		}
	}
	return ""
}

// hostileWorker answers the handshake truthfully and validation with a
// plausible lie (every photo is 12 MP: its clean answer may weigh 12 MB),
// so that photos are admitted and reach selection, and everything else
// with the most the protocol lets through ("hostile-flood": a 64 KiB score, a 1 MiB
// faces answer, a clean photo of garbage at its full bound) or more
// ("hostile-claims": a length prefix of 64 MiB, or of the bound plus one).
func hostileWorker(mode string) int {
	out := os.Stdout
	for {
		req, err := vision.ReadRequest(os.Stdin)
		if err != nil {
			return 0
		}
		resp := &vision.Response{ID: req.ID}
		switch {
		case mode == "hostile-leak" && req.Op != vision.OpPing && !(req.Op == vision.OpFaces && len(req.Faces.Image) < 2048):
			leakWorker(req, resp)
		case req.Op == vision.OpPing:
			resp.Pong = &vision.Pong{PID: os.Getpid(), Protocol: vision.ProtocolVersion, Ops: []vision.Op{"ping", "score", "faces", "validate", "clean"}}
		case req.Op == vision.OpFaces && len(req.Faces.Image) < 2048:
			// The daemon's health probe (a blank 64x64 image): a worker
			// taken over by an image may well pass it, and this one does,
			// so that what follows reaches the daemon.
			resp.Faces = &vision.FacesResult{Width: 64, Height: 64, Model: descriptor.Model}
		case req.Op == vision.OpValidate:
			// Every photo is 12 MP, it says: its clean answer may then weigh
			// 12 MB, whatever the photo's own size.
			if _, _, err := image.DecodeConfig(bytes.NewReader(req.Validate.Image)); err != nil {
				resp.Error = err.Error()
			} else {
				resp.Validate = &vision.ValidateResult{Format: "jpeg", Width: 4000, Height: 3000}
			}
		case mode == "hostile-claims":
			claim := uint32(vision.MaxFrame)
			if req.Op == vision.OpClean {
				claim = uint32(4 + 2 + req.Clean.MaxBytes + 1)
			}
			var pre [8]byte
			binary.BigEndian.PutUint32(pre[:4], claim)
			binary.BigEndian.PutUint32(pre[4:], 2)
			out.Write(pre[:])
			out.Write([]byte("{}"))
			io.CopyN(out, zeros{}, int64(claim)-6) // and sends it all, should the daemon read on
			continue
		case req.Op == vision.OpScore:
			b := map[string]float64{}
			for _, f := range []string{"faces", "face_size", "placement", "smile", "eyes_open", "sharpness", "noise", "exposure", "time_of_day"} {
				b[f] = 1
			}
			for i := 0; len(b) < 2700; i++ { // about 64 KiB of JSON
				b[fmt.Sprintf("pad%05d", i)] = 0.123456
			}
			resp.Score = &vision.ScoreResult{Score: 1, Breakdown: b, PHash: uint64(req.ID) * 0x9E3779B97F4A7C15, Width: 4000, Height: 3000}
		case req.Op == vision.OpFaces:
			f := &vision.FacesResult{Width: 4000, Height: 3000, Model: descriptor.Model}
			tpl := bytes.Repeat([]byte{7}, 512)
			for i := 0; i < 1400; i++ { // about 1 MiB of JSON
				f.Faces = append(f.Faces, vision.FaceTemplate{X: i % 3900, Y: i % 2900, W: 40, H: 40, Template: tpl})
			}
			for {
				raw, _ := json.Marshal(&vision.Response{ID: req.ID, Faces: f})
				if len(raw) <= 1<<20 {
					break
				}
				f.Faces = f.Faces[:len(f.Faces)-20]
			}
			resp.Faces = f
		case req.Op == vision.OpClean:
			resp.Clean = &vision.CleanResult{Width: req.Clean.Width, Height: req.Clean.Height,
				JPEG: bytes.Repeat([]byte{0xFF, 0xD8, 0x42}, int(req.Clean.MaxBytes/3))}
		default:
			resp.Error = "no"
		}
		if err := vision.WriteResponse(out, resp); err != nil {
			return 1
		}
	}
}

// leakWorker is a worker an image took over ("hostile-leak") that tries
// to write the image's bytes into the daemon's log: a photo ending in
// "leak-validate" fails validation with them in its error's text and
// code, a photo's score fails the same way, a frame's faces crash the
// worker with them as its last log lines.
func leakWorker(req *vision.Request, resp *vision.Response) {
	var img []byte
	switch req.Op {
	case vision.OpValidate:
		img = req.Validate.Image
		if !bytes.HasSuffix(img, []byte("leak-validate")) {
			cfg, _, err := image.DecodeConfig(bytes.NewReader(img))
			if err != nil {
				resp.Error = err.Error()
			} else {
				resp.Validate = &vision.ValidateResult{Format: "jpeg", Width: cfg.Width, Height: cfg.Height}
			}
			return
		}
	case vision.OpScore:
		img = req.Score.Image
	case vision.OpFaces:
		fmt.Fprintln(os.Stderr, leakWords(req.Faces.Image))
		fmt.Fprintln(os.Stderr, `{"level":"ERROR","msg":"`+leakWords(req.Faces.Image)+`"}`)
		os.Exit(3)
	default:
		resp.Error = "no"
		return
	}
	fmt.Fprintln(os.Stderr, leakWords(img))
	resp.Error = leakWords(img)
	resp.Code = vision.ErrorCode(leakWords(img))
}

// leakWords is a piece of an image (the 96 bytes from its 1000th) as an
// attacker would write it: base64 and hex.
func leakWords(img []byte) string {
	p := leakPiece(img)
	return base64.StdEncoding.EncodeToString(p) + " " + hex.EncodeToString(p)
}

func leakPiece(img []byte) []byte { return img[1000:1096] }

// TestP16_AHostileWorkerWritesNoImageIntoTheDaemonsLog: a worker that an
// image took over writes bytes of the image into every word of its that
// reaches the daemon (its error answers, text and code, and its last log
// lines before it crashes), for a photo's validation, a photo's score and
// a frame's faces. The daemon's log holds none of them; it says what
// happened (photo invalid, not scored, worker crashed) with its own words.
func TestP16_AHostileWorkerWritesNoImageIntoTheDaemonsLog(t *testing.T) {
	b := testbroker.Start(t)
	r := hostileRig(t, b, "hostile-leak")
	a := newApp(t, b, r.deviceID)
	r.start()
	enableAutoPhoto(a)
	// An open enrollment: its frames go to the worker.
	a.must("patrol-1", "set_features", map[string]any{"patrol": true})
	a.must("g", "grant_consent", map[string]any{"subject_id": "p-1", "display_name": "Ana", "granted_by": "self", "scopes": []string{"face_recognition"}})
	a.must("e", "start_enrollment", map[string]any{"subject_id": "p-1"})
	pics := photos(t, 3)
	invalid := append(append([]byte(nil), pics[0]...), "leak-validate"...)
	r.drop("invalid.jpg", invalid)
	r.drop("scored.jpg", pics[1])
	r.waitSpoolEmpty(30 * time.Second)
	a.must("sel-1", "select_photos", map[string]any{})
	a.events.WaitFor(t, 60*time.Second, func(m testbroker.Message) bool {
		return strings.Contains(string(m.Payload), `"selection_done"`)
	})
	r.dropFrame("frame.jpg", pics[2])
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(r.logs.String(), "frame not analysed") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	r.stop()
	logs := r.logs.String()
	for _, want := range []string{"photo invalid", "photo not scored", "frame not analysed", "vision worker crashed", "exit status 3"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the daemon's log never says %q: the leak was not tried", want)
		}
	}
	for _, img := range [][]byte{invalid, pics[1], pics[2]} {
		p := leakPiece(img)
		for name, enc := range map[string]string{"base64": base64.StdEncoding.EncodeToString(p), "hex": hex.EncodeToString(p)} {
			for i := 0; i+24 <= len(enc); i++ {
				if strings.Contains(logs, enc[i:i+24]) {
					t.Fatalf("the image's bytes (%s) are in the daemon's log:\n%s", name, logs)
				}
			}
		}
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// hostileRig is a daemon whose vision worker is this binary in mode. Its
// face nets folder holds the real nets (health checks them against their
// SHA256SUMS before it lets a worker judge an image); the folder's name
// tells the worker how to misbehave.
func hostileRig(t *testing.T, b *testbroker.Broker, mode string) *rig {
	models := filepath.Join(t.TempDir(), mode)
	if err := os.CopyFS(models, os.DirFS(faceModels)); err != nil {
		t.Fatal(err)
	}
	return newRig(t, b, "photos:\n  keep_per_day: 3\n  min_score: 0\nvision:\n  worker: "+os.Args[0]+"\n  face_models_dir: "+models+"\n")
}

// Issue 21: whatever the worker sends, the daemon's memory stays bounded:
// answers are refused before they are read when they claim more than
// their request allows, a clean photo streams to a file at its full bound
// and is refused for what it is; the photos are deleted (not_cleaned or
// unscorable), the worker killed, and the daemon runs on.
func TestP16_AHostileWorkerDoesNotGrowTheDaemon(t *testing.T) {
	for _, mode := range []string{"hostile-flood", "hostile-claims"} {
		t.Run(mode, func(t *testing.T) {
			b := testbroker.Start(t)
			r := hostileRig(t, b, mode)
			a := newApp(t, b, r.deviceID)
			r.start()
			enableAutoPhoto(a)
			a.must("blur-1", "set_features", map[string]any{"blur_unknown_faces": true})
			for i, p := range photos(t, 3) {
				r.drop(name("h", i), p)
			}
			r.waitSpoolEmpty(30 * time.Second)
			a.must("sel-1", "select_photos", map[string]any{})
			var ev map[string]any
			a.events.WaitFor(t, 120*time.Second, func(m testbroker.Message) bool {
				return strings.Contains(string(m.Payload), `"selection_done"`) && jsonInto(m.Payload, &ev)
			})
			if num(ev, "kept") != 0 || num(ev, "deleted") != 3 {
				t.Fatalf("selection_done %v: a hostile worker's answer was kept", ev)
			}
			logs := r.logs.String()
			want := map[string]string{"hostile-flood": `"reason":"not_cleaned"`, "hostile-claims": "size limit"}[mode]
			if !strings.Contains(logs, want) {
				t.Fatalf("the daemon's log never says %s: the hostile answers were not the ones refused", want)
			}
			if n := outboxFiles(t, r); n != 0 {
				t.Fatalf("%d outbox files left behind", n)
			}
			hwm := peakRSS(t, r.cmd.Process.Pid)
			t.Logf("daemon peak RSS %d MiB", hwm>>20)
			if hwm > 64<<20 {
				t.Fatalf("the daemon's peak RSS reached %d MiB, over 64", hwm>>20)
			}
			r.stop()
		})
	}
}

// BenchmarkHostileWorkerDaemonPeakRSS reports the daemon's peak resident
// memory (the binary as shipped) through a selection of three photos the
// worker says are 12 MP, with blurring on, against each hostile worker.
//
//	go test -run '^$' -bench HostileWorkerDaemonPeakRSS -benchtime 3x ./cmd/aibo-privacyd/
func BenchmarkHostileWorkerDaemonPeakRSS(b *testing.B) {
	photo, err := os.ReadFile("../../testdata/photos/rocket.jpg")
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"hostile-flood", "hostile-claims"} {
		b.Run(mode, func(b *testing.B) {
			br := testbroker.Start(b)
			worst := 0
			for i := 0; i < b.N; i++ {
				r := newBenchRig(b, br)
				models := filepath.Join(b.TempDir(), mode)
				os.Mkdir(models, 0o755)
				cmd := benchStart(b, r, "photos:\n  keep_per_day: 3\n  min_score: 0\nvision:\n  worker: "+os.Args[0]+"\n  face_models_dir: "+models+"\n")
				c := br.Client(b)
				events := c.Subscribe(b, "aibo/bench/events")
				send := benchSend(b, c)
				send("acc", "accept_policy", `{"version":"v1"}`)
				send("on", "set_features", `{"auto_photo":true,"blur_unknown_faces":true}`)
				benchDrop(b, r, map[string][]byte{"h-0.jpg": photo, "h-1.jpg": photo, "h-2.jpg": photo}, 60*time.Second)
				send("sel", "select_photos", `{}`)
				events.WaitFor(b, 120*time.Second, func(m testbroker.Message) bool { return bytes.Contains(m.Payload, []byte(`"selection_done"`)) })
				if hwm := procKB(b, cmd.Process.Pid, "VmHWM:"); hwm > worst {
					worst = hwm
				}
				cmd.Process.Signal(syscall.SIGTERM)
				cmd.Wait()
			}
			b.ReportMetric(float64(worst)/1024, "peak-RSS-MiB")
		})
	}
}
