// Command demo plays the owner's app and the cloud against a running
// daemon (make demo starts one): it accepts the policy, switches automatic
// photos on, drops sample photos into the camera spool the way the camera
// does, asks for a selection, receives the uploads, acks them into
// ./var/cloud/ and prints what was kept and what was deleted.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"image/jpeg"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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
	m      manifest
	chunks map[int][]byte
}

func run() error {
	broker := flag.String("broker", "tcp://127.0.0.1:18830", "MQTT broker")
	device := flag.String("device", "aibo-dev", "device_id")
	spool := flag.String("spool", "var/spool", "the daemon's spool_dir")
	cloudDir := flag.String("cloud", "var/cloud", "where the cloud keeps what it received")
	flag.Parse()
	prefix := "aibo/" + *device + "/"
	if err := os.MkdirAll(*cloudDir, 0o755); err != nil {
		return err
	}

	var mu sync.Mutex
	results := map[string]chan json.RawMessage{}
	events := make(chan map[string]any, 64)
	arts := map[string]*artifact{}
	received := make(chan string, 64)

	opts := mqtt.NewClientOptions().AddBroker(*broker).SetClientID("demo-app-" + strconv.Itoa(os.Getpid())).SetCleanSession(true)
	c := mqtt.NewClient(opts)
	if t := c.Connect(); !t.WaitTimeout(5*time.Second) || t.Error() != nil {
		return fmt.Errorf("connect to %s: %v", *broker, t.Error())
	}
	defer c.Disconnect(200)
	sub := func(topic string, h mqtt.MessageHandler) error {
		t := c.Subscribe(prefix+topic, 1, h)
		t.WaitTimeout(5 * time.Second)
		return t.Error()
	}
	complete := func(a *artifact) {
		if len(a.chunks) != a.m.Chunks || a.m.Kind != "photo" {
			return
		}
		var body []byte
		for i := 0; i < a.m.Chunks; i++ {
			body = append(body, a.chunks[i]...)
		}
		sum := sha256.Sum256(body)
		if hex.EncodeToString(sum[:]) != a.m.SHA256 {
			fmt.Println("  cloud: checksum mismatch for", a.m.ArtifactID, "- not acked, the robot will resend")
			return
		}
		path := filepath.Join(*cloudDir, a.m.ArtifactID+".jpg")
		os.WriteFile(path, body, 0o644)
		c.Publish(prefix+"artifacts/"+a.m.ArtifactID+"/ack", 1, false, []byte(`{"ok":true}`)).Wait()
		received <- path
	}
	err := sub("#", func(_ mqtt.Client, m mqtt.Message) {
		topic := strings.TrimPrefix(m.Topic(), prefix)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case topic == "cmd/result":
			var r struct{ ID string }
			json.Unmarshal(m.Payload(), &r)
			if ch, ok := results[r.ID]; ok {
				ch <- m.Payload()
			}
		case topic == "events":
			var e map[string]any
			if json.Unmarshal(m.Payload(), &e) == nil {
				select {
				case events <- e:
				default:
				}
			}
		case strings.HasPrefix(topic, "artifacts/") && strings.HasSuffix(topic, "/meta"):
			var mf manifest
			if json.Unmarshal(m.Payload(), &mf) == nil {
				a := arts[mf.ArtifactID]
				if a == nil {
					a = &artifact{chunks: map[int][]byte{}}
					arts[mf.ArtifactID] = a
				}
				a.m = mf
				complete(a)
			}
		case strings.HasPrefix(topic, "artifacts/") && strings.Contains(topic, "/chunk/"):
			parts := strings.Split(topic, "/")
			n, _ := strconv.Atoi(parts[3])
			a := arts[parts[1]]
			if a == nil {
				a = &artifact{chunks: map[int][]byte{}}
				arts[parts[1]] = a
			}
			a.chunks[n] = append([]byte(nil), m.Payload()...)
			complete(a)
		}
	})
	if err != nil {
		return err
	}
	seq := time.Now().UnixNano()
	send := func(typ string, payload any) (json.RawMessage, error) {
		seq++
		id := "demo-" + strconv.FormatInt(seq, 36)
		ch := make(chan json.RawMessage, 1)
		mu.Lock()
		results[id] = ch
		mu.Unlock()
		raw, _ := json.Marshal(map[string]any{"id": id, "type": typ, "issued_at": time.Now().UTC().Format(time.RFC3339), "payload": payload})
		c.Publish(prefix+"cmd", 1, false, raw).Wait()
		select {
		case r := <-ch:
			fmt.Printf("app  → %-13s ← %s\n", typ, r)
			return r, nil
		case <-time.After(10 * time.Second):
			return nil, fmt.Errorf("%s: no answer from the robot (is make run's daemon up?)", typ)
		}
	}

	if _, err := send("accept_policy", map[string]any{"version": "2026-11"}); err != nil {
		return err
	}
	if _, err := send("set_features", map[string]any{"auto_photo": true}); err != nil {
		return err
	}

	// The camera takes a few photos: one good portrait, its blurred, dark
	// and noisy copies, and scenes without people.
	raw, err := os.ReadFile("testdata/score/astronaut.jpg")
	if err != nil {
		return err
	}
	img, err := jpeg.Decode(bytes.NewReader(raw))
	if err != nil {
		return err
	}
	clean := synth.RGBA(img)
	photos := map[string][]byte{
		"portrait.jpg":         synth.JPEG(clean, 92),
		"portrait-blurred.jpg": synth.JPEG(synth.Blur(clean, 4), 92),
		"portrait-dark.jpg":    synth.JPEG(synth.Exposure(clean, 0.2), 92),
		"portrait-noisy.jpg":   synth.JPEG(synth.Noise(clean, 30, 1), 92),
	}
	for _, f := range []string{"testdata/score/coffee.jpg", "testdata/photos/rocket.jpg"} {
		if b, err := os.ReadFile(f); err == nil {
			photos[filepath.Base(f)] = b
		}
	}
	dir := filepath.Join(*spool, "photos")
	for name, data := range photos {
		tmp := filepath.Join(dir, ".demo-"+name)
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			return err
		}
		fmt.Println("camera → spool/photos/" + name)
	}
	time.Sleep(2500 * time.Millisecond) // every spool file is decided within 2 s
	if _, err := send("select_photos", map[string]any{}); err != nil {
		return err
	}
	var done map[string]any
	deadline := time.After(60 * time.Second)
wait:
	for {
		select {
		case e := <-events:
			if e["type"] == "selection_done" {
				done = e
				break wait
			}
		case <-deadline:
			return fmt.Errorf("no selection_done within 60 s")
		}
	}
	kept := int(done["kept"].(float64))
	fmt.Printf("robot: selection_done: kept %d, deleted %d (deleted ones are gone from the robot)\n", kept, int(done["deleted"].(float64)))
	for i := 0; i < kept; i++ {
		select {
		case p := <-received:
			fmt.Println("cloud: received and acked", p)
		case <-time.After(30 * time.Second):
			return fmt.Errorf("upload %d of %d never arrived", i+1, kept)
		}
	}
	return nil
}
