// Command demo plays the owner's app and the cloud against a running
// daemon (make demo starts one, scripts/demo.sh): it accepts the policy,
// switches automatic photos on, drops sample photos into the camera spool
// the way the camera does (and keeps a copy in -camera for the contact
// sheet), asks for a selection, receives and acks the uploads into -cloud,
// and ends with a table of every photo: kept or deleted, its score and
// rank, and why, read from the daemon's own log (-log).
//
// MQTT callbacks only hand messages over to the main goroutine: publishing
// and waiting inside a paho callback deadlocks the client (paho documents
// it), which is how an earlier version hung for 60 s.
package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image/jpeg"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/aibo-privacy/aibo-privacyd/capture/score/synth"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type manifest struct {
	ArtifactID string         `json:"artifact_id"`
	Kind       string         `json:"kind"`
	Size       int            `json:"size"`
	SHA256     string         `json:"sha256"`
	Chunks     int            `json:"chunks"`
	Attrs      map[string]any `json:"attrs"`
}

type artifact struct {
	m      *manifest
	chunks map[int][]byte
}

// upload is a photo the cloud received whole and acked.
type upload struct {
	id, path string
	score    float64
}

type demo struct {
	c        mqtt.Client
	prefix   string
	msgs     chan mqtt.Message
	events   []map[string]any
	results  map[string]json.RawMessage
	arts     map[string]*artifact
	uploads  []upload
	cloudDir string
	start    time.Time
}

func run() error {
	broker := flag.String("broker", "tcp://127.0.0.1:18830", "MQTT broker")
	device := flag.String("device", "aibo-dev", "device_id")
	spool := flag.String("spool", "var/spool", "the daemon's spool_dir")
	cloudDir := flag.String("cloud", "var/cloud", "where the cloud keeps what it received")
	cameraDir := flag.String("camera", "", "where to keep a copy of each photo dropped (for bestshot sheet)")
	logFile := flag.String("log", "", "the daemon's log (JSON lines), for the reasons of each decision")
	flag.Parse()
	for _, d := range []string{*cloudDir, *cameraDir} {
		if d != "" {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
	}
	d := &demo{prefix: "aibo/" + *device + "/", msgs: make(chan mqtt.Message, 4096),
		results: map[string]json.RawMessage{}, arts: map[string]*artifact{}, cloudDir: *cloudDir, start: time.Now()}
	opts := mqtt.NewClientOptions().AddBroker(*broker).SetClientID("demo-app-" + strconv.Itoa(os.Getpid())).
		SetCleanSession(true).SetOrderMatters(false).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) { d.msgs <- m })
	d.c = mqtt.NewClient(opts)
	if t := d.c.Connect(); !t.WaitTimeout(5*time.Second) || t.Error() != nil {
		return fmt.Errorf("connect to %s: %v (is the broker up?)", *broker, t.Error())
	}
	defer d.c.Disconnect(200)
	if t := d.c.Subscribe(d.prefix+"#", 1, nil); !t.WaitTimeout(5*time.Second) || t.Error() != nil {
		return fmt.Errorf("subscribe: %v", t.Error())
	}
	d.step("app and cloud connected to %s as the robot %q", *broker, *device)

	if _, err := d.send("accept_policy", map[string]any{"version": "2026-11"}); err != nil {
		return err
	}
	if _, err := d.send("set_features", map[string]any{"auto_photo": true}); err != nil {
		return err
	}

	photos, err := samplePhotos()
	if err != nil {
		return err
	}
	names := make([]string, 0, len(photos))
	for name := range photos {
		names = append(names, name)
	}
	sort.Strings(names)
	dir := filepath.Join(*spool, "photos")
	for _, name := range names {
		if *cameraDir != "" {
			if err := os.WriteFile(filepath.Join(*cameraDir, name), photos[name], 0o644); err != nil {
				return err
			}
		}
		tmp := filepath.Join(dir, ".demo-"+name)
		if err := os.WriteFile(tmp, photos[name], 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	d.step("camera dropped %d photos into %s: %s", len(names), dir, strings.Join(names, ", "))
	if err := d.waitSpoolEmpty(dir, names, 10*time.Second); err != nil {
		return err
	}
	d.step("robot took them in (sealed under keys of their own)")

	if _, err := d.send("select_photos", map[string]any{}); err != nil {
		return err
	}
	done, err := d.waitEvent("selection_done", 60*time.Second)
	if err != nil {
		return err
	}
	kept, deleted := num(done["kept"]), num(done["deleted"])
	d.step("robot: selection_done: %d kept for upload, %d deleted from the robot", kept, deleted)
	if err := d.waitUploads(kept, 60*time.Second); err != nil {
		return err
	}
	fmt.Println()
	return d.table(*logFile, names)
}

func (d *demo) step(format string, a ...any) {
	fmt.Printf("[%5.1fs] %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, a...))
}

// pump handles one MQTT message on the main goroutine.
func (d *demo) pump(m mqtt.Message) {
	topic := strings.TrimPrefix(m.Topic(), d.prefix)
	switch {
	case topic == "cmd/result":
		var r struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(m.Payload(), &r) == nil {
			d.results[r.ID] = append(json.RawMessage(nil), m.Payload()...)
		}
	case topic == "events":
		var e map[string]any
		if json.Unmarshal(m.Payload(), &e) == nil {
			d.events = append(d.events, e)
		}
	case strings.HasPrefix(topic, "artifacts/") && strings.HasSuffix(topic, "/meta"):
		var mf manifest
		if json.Unmarshal(m.Payload(), &mf) == nil {
			d.artifact(mf.ArtifactID).m = &mf
			d.complete(mf.ArtifactID)
		}
	case strings.HasPrefix(topic, "artifacts/") && strings.Contains(topic, "/chunk/"):
		parts := strings.Split(topic, "/")
		if len(parts) == 4 {
			n, _ := strconv.Atoi(parts[3])
			d.artifact(parts[1]).chunks[n] = append([]byte(nil), m.Payload()...)
			d.complete(parts[1])
		}
	}
}

func (d *demo) artifact(id string) *artifact {
	a := d.arts[id]
	if a == nil {
		a = &artifact{chunks: map[int][]byte{}}
		d.arts[id] = a
	}
	return a
}

// complete saves and acks a photo once its manifest and every chunk came.
func (d *demo) complete(id string) {
	a := d.arts[id]
	if a.m == nil || len(a.chunks) != a.m.Chunks || a.m.Kind != "photo" {
		return
	}
	var body []byte
	for i := 0; i < a.m.Chunks; i++ {
		body = append(body, a.chunks[i]...)
	}
	delete(d.arts, id)
	sum := sha256.Sum256(body)
	if hex.EncodeToString(sum[:]) != a.m.SHA256 {
		d.step("cloud: checksum mismatch for %s: not acked, the robot will send it again", id)
		return
	}
	path := filepath.Join(d.cloudDir, id+".jpg")
	if err := os.WriteFile(path, body, 0o644); err != nil {
		d.step("cloud: %v", err)
		return
	}
	d.c.Publish(d.prefix+"artifacts/"+id+"/ack", 1, false, []byte(`{"ok":true}`)).WaitTimeout(5 * time.Second)
	score, _ := a.m.Attrs["score"].(float64)
	d.uploads = append(d.uploads, upload{id: id, path: path, score: score})
	d.step("cloud ← photo %s (%d bytes, %d chunks, score %.3f), acked; saved as %s", id, len(body), a.m.Chunks, score, path)
}

// until pumps messages until cond holds or d passes.
func (d *demo) until(what string, timeout time.Duration, cond func() bool) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for !cond() {
		select {
		case m := <-d.msgs:
			d.pump(m)
		case <-tick.C:
			d.step("… still waiting for %s", what)
		case <-deadline.C:
			return fmt.Errorf("no %s within %s: see the daemon's log", what, timeout)
		}
	}
	return nil
}

func (d *demo) send(typ string, payload any) (json.RawMessage, error) {
	id := "demo-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	raw, _ := json.Marshal(map[string]any{"id": id, "type": typ, "issued_at": time.Now().UTC().Format(time.RFC3339), "payload": payload})
	if t := d.c.Publish(d.prefix+"cmd", 1, false, raw); !t.WaitTimeout(5*time.Second) || t.Error() != nil {
		return nil, fmt.Errorf("%s: publish: %v", typ, t.Error())
	}
	if err := d.until("the result of "+typ, 10*time.Second, func() bool { return d.results[id] != nil }); err != nil {
		return nil, err
	}
	r := d.results[id]
	var res struct {
		OK bool `json:"ok"`
	}
	json.Unmarshal(r, &res)
	d.step("app → %s ← %s", typ, r)
	if !res.OK {
		return r, fmt.Errorf("%s refused: %s", typ, r)
	}
	return r, nil
}

func (d *demo) waitEvent(typ string, timeout time.Duration) (map[string]any, error) {
	var ev map[string]any
	err := d.until(typ, timeout, func() bool {
		for _, e := range d.events {
			if e["type"] == typ {
				ev = e
				return true
			}
		}
		return false
	})
	return ev, err
}

func (d *demo) waitUploads(n int, timeout time.Duration) error {
	return d.until(fmt.Sprintf("%d uploads", n), timeout, func() bool { return len(d.uploads) >= n })
}

// waitSpoolEmpty waits until the daemon has taken every dropped photo.
func (d *demo) waitSpoolEmpty(dir string, names []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		left := 0
		for _, n := range names {
			if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
				left++
			}
		}
		if left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d photos still in %s after %s: is the daemon running?", left, dir, timeout)
		}
		select {
		case m := <-d.msgs:
			d.pump(m)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// samplePhotos: one good portrait, its blurred, dark and noisy copies (the
// same moment: near-duplicates), a scene without people and a launch
// without any face (it scores under photos.min_score).
func samplePhotos() (map[string][]byte, error) {
	raw, err := os.ReadFile("testdata/score/astronaut.jpg")
	if err != nil {
		return nil, err
	}
	img, err := jpeg.Decode(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	clean := synth.RGBA(img)
	photos := map[string][]byte{
		"portrait.jpg":         synth.JPEG(clean, 92),
		"portrait-blurred.jpg": synth.JPEG(synth.Blur(clean, 4), 92),
		"portrait-dark.jpg":    synth.JPEG(synth.Exposure(clean, 0.2), 92),
		"portrait-noisy.jpg":   synth.JPEG(synth.Noise(clean, 30, 1), 92),
	}
	for _, f := range []string{"testdata/score/coffee.jpg", "testdata/photos/rocket.jpg"} {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		photos[filepath.Base(f)] = b
	}
	return photos, nil
}

// decision is what the daemon logged about one photo.
type decision struct {
	file, photoID string
	kept, decided bool
	score         float64
	rank          int
	reason        string
}

var why = map[string]string{
	"below_min_score":           "scored under photos.min_score",
	"near_duplicate_or_no_room": "the same moment as a better photo kept (near-duplicate), or the day's keep_per_day is reached",
	"unscorable":                "could not be scored",
	"not_masked":                "strangers' faces in it could not be blurred",
	"queue_full":                "the upload queue is full",
	"recognition_changed":       "someone in it stopped being recognised while it was prepared",
}

// table prints every photo with the daemon's decision, from its log.
func (d *demo) table(logFile string, names []string) error {
	if logFile == "" {
		return nil
	}
	deadline := time.Now().Add(5 * time.Second)
	var byFile map[string]*decision
	for {
		var err error
		if byFile, err = readDecisions(logFile); err != nil {
			return err
		}
		all := true
		for _, n := range names {
			if byFile[n] == nil || !byFile[n].decided {
				all = false
			}
		}
		if all || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	sort.SliceStable(names, func(i, j int) bool {
		a, b := byFile[names[i]], byFile[names[j]]
		if a == nil || b == nil {
			return b == nil && a != nil
		}
		return a.rank < b.rank
	})
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PHOTO\tDECISION\tSCORE\tRANK\tWHY")
	for _, n := range names {
		dc := byFile[n]
		switch {
		case dc == nil:
			fmt.Fprintf(tw, "%s\t?\t\t\tnot in the daemon's log (log_level must be info or debug)\n", n)
		case !dc.decided:
			fmt.Fprintf(tw, "%s\tadmitted\t\t\tnot decided yet\n", n)
		case dc.kept:
			where := "uploaded"
			for _, u := range d.uploads {
				if u.score == dc.score {
					where = "uploaded: " + u.path
				}
			}
			fmt.Fprintf(tw, "%s\tkept\t%.3f\t%d\t%s\n", n, dc.score, dc.rank, where)
		default:
			text := why[dc.reason]
			if text == "" {
				text = dc.reason
			}
			score, rank := fmt.Sprintf("%.3f", dc.score), strconv.Itoa(dc.rank)
			if dc.score < 0 {
				score, rank = "-", "-"
			}
			fmt.Fprintf(tw, "%s\tdeleted\t%s\t%s\t%s (%s)\n", n, score, rank, text, dc.reason)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Println("\nDeleted photos are gone from the robot: their files and their keys.")
	return nil
}

// readDecisions maps spool file names to what the daemon logged: "photo
// admitted" gives the photo id of a file, "photo kept/deleted by
// selection" its score, rank and reason.
func readDecisions(path string) (map[string]*decision, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return map[string]*decision{}, nil
		}
		return nil, err
	}
	defer f.Close()
	byID := map[string]*decision{}
	byFile := map[string]*decision{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l struct {
			Msg     string  `json:"msg"`
			File    string  `json:"file"`
			PhotoID string  `json:"photo_id"`
			Score   float64 `json:"score"`
			Rank    int     `json:"rank"`
			Reason  string  `json:"reason"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.PhotoID == "" {
			continue
		}
		dc := byID[l.PhotoID]
		if dc == nil {
			dc = &decision{photoID: l.PhotoID}
			byID[l.PhotoID] = dc
		}
		switch l.Msg {
		case "photo admitted":
			dc.file = l.File
			byFile[l.File] = dc
		case "photo kept by selection":
			dc.decided, dc.kept, dc.score, dc.rank = true, true, l.Score, l.Rank
		case "photo deleted by selection":
			dc.decided, dc.score, dc.rank, dc.reason = true, l.Score, l.Rank, l.Reason
		}
	}
	return byFile, sc.Err()
}

func num(v any) int {
	f, _ := v.(float64)
	return int(f)
}
