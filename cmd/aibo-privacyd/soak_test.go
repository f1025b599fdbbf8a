//go:build soak

package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/agent"
	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// TestSoak is make soak: a simulated week, each day compressed to
// SOAK_DAY_SECONDS (default 60) through the daemon's test-only clock
// (agent.TestClockEnv). Every day: 35 photos (the cap and 5 over it, which
// starts a selection; the cloud acks every upload), a person granted,
// enrolled from three frames and seen on Patrol, the previous day's person
// revoked, an inventory exported, a broker outage, 300 technician requests;
// a kill -9 on days 3 and 6. At the end of each day it reports the
// daemon's resident memory, goroutines, open files and the store's size,
// and fails unless they stay flat.
func TestSoak(t *testing.T) {
	daySeconds := 60
	if v, err := strconv.Atoi(os.Getenv("SOAK_DAY_SECONDS")); err == nil && v >= 20 {
		daySeconds = v
	}
	days := 7
	if v, err := strconv.Atoi(os.Getenv("SOAK_DAYS")); err == nil && v >= 3 {
		days = v
	}
	speed := 86400 / float64(daySeconds)
	la, _ := time.LoadLocation("America/Los_Angeles")
	simStart := time.Date(2026, 11, 22, 0, 1, 0, 0, la)
	realStart := time.Now()
	simNow := func() time.Time {
		return simStart.Add(time.Duration(float64(time.Since(realStart)) * speed))
	}
	b := testbroker.Start(t)
	r := newRig(t, b, "faces:\n  enrollment_samples: 3\n  enrollment_timeout: 6h\n  sighting_interval: 0s\nphotos:\n  keep_per_day: 10\n  min_score: 0\nmqtt:\n  ack_timeout: 5s\n")
	start := func() {
		os.Setenv(agent.TestClockEnv, simNow().UTC().Format(time.RFC3339)+"@"+strconv.FormatFloat(speed, 'f', -1, 64))
		r.start()
	}
	start()
	a := newApp(t, b, r.deviceID)
	a.must("acc", "accept_policy", map[string]any{"version": "v1"})
	a.must("feat", "set_features", map[string]any{"auto_photo": true, "patrol": true})

	// The cloud: acks every artifact it is offered, across broker outages.
	var ackMu sync.Mutex
	acked := 0
	stopCloud := make(chan struct{})
	go func() {
		for {
			select {
			case <-stopCloud:
				return
			default:
			}
			c := b.Client(t)
			metas := c.Subscribe(t, a.topic("artifacts/+/meta"))
			for b.Running() {
				var m manifest
				if metas.WaitWithin(200*time.Millisecond, func(msg testbroker.Message) bool { return json.Unmarshal(msg.Payload, &m) == nil }) {
					if c.TryPublish(a.topic("artifacts/"+m.ArtifactID+"/ack"), []byte(`{"ok":true}`), false) == nil {
						ackMu.Lock()
						acked++
						ackMu.Unlock()
					}
				}
				select {
				case <-stopCloud:
					return
				default:
				}
			}
			for !b.Running() {
				time.Sleep(100 * time.Millisecond)
			}
		}
	}()
	defer close(stopCloud)

	pics := photos(t, 35)
	orlPeople := []string{"s2", "s7", "s12"} // the committed ORL faces
	type sample struct {
		day                 int
		rssMiB, storeKiB    float64
		fds, goroutines     int
		admitted, uploaded  int
		deleted, overCap    int
		ackedSoFar, pending int
	}
	var samples []sample
	for day := 1; day <= days; day++ {
		dayEnd := realStart.Add(time.Duration(day*daySeconds) * time.Second)
		// The simulated day has begun (the daemon's clock is a second or so
		// past its midnight).
		time.Sleep(time.Until(realStart.Add(time.Duration((day-1)*daySeconds)*time.Second + time.Second)))
		for i, p := range pics {
			r.drop("d"+strconv.Itoa(day)+"-"+strconv.Itoa(i)+".jpg", p)
		}
		r.waitSpoolEmpty(30 * time.Second)
		// A person a day: granted, enrolled, seen; yesterday's revoked.
		id := "p" + strconv.Itoa(day)
		a.must("g"+id, "grant_consent", map[string]any{"subject_id": id, "display_name": "Person", "granted_by": "self", "scopes": []string{"face_recognition"}})
		a.must("e"+id, "start_enrollment", map[string]any{"subject_id": id})
		orlID := orlPeople[day%len(orlPeople)]
		for n := 1; n <= 3; n++ {
			img, _ := scene(orl(t, orlID, n))
			r.dropFrame(id+"-"+strconv.Itoa(n)+".png", encodePNG(t, img))
		}
		eventOf(t, a, "enrollment_completed")
		img, _ := scene(orl(t, orlID, 4))
		r.dropFrame(id+"-probe.png", encodePNG(t, img))
		if day > 1 {
			a.must("r"+id, "revoke_consent", map[string]any{"subject_id": "p" + strconv.Itoa(day-1)})
		}
		a.must("inv"+id, "export_inventory", map[string]any{})
		// The broker goes away for two seconds.
		b.Stop()
		time.Sleep(2 * time.Second)
		b.Restart(t)
		a = newApp(t, b, r.deviceID)
		a.status.WaitFor(t, 40*time.Second, func(m testbroker.Message) bool { return string(m.Payload) == "online" })
		// Technicians.
		c := unixClient(r.socket)
		for i := range 300 {
			path := "/metrics"
			if i%3 == 0 {
				path = "/v1/status"
			}
			if resp, err := c.Get("http://diag" + path); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
		if day == 3 || day == 6 {
			r.kill()
			start()
			a.status.WaitFor(t, 40*time.Second, func(m testbroker.Message) bool { return string(m.Payload) == "online" })
		}
		if time.Now().After(dayEnd) {
			t.Logf("day %d's work took longer than the day (%ds)", day, daySeconds)
		}
		time.Sleep(time.Until(dayEnd.Add(-2 * time.Second)))
		pid := r.cmd.Process.Pid
		fds, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
		st, _ := os.Stat(filepath.Join(r.dataDir, "state.db"))
		s := sample{day: day, rssMiB: float64(procKBT(t, pid, "VmRSS:")) / 1024, storeKiB: float64(st.Size()) / 1024,
			fds: len(fds), goroutines: goroutines(t, r)}
		c2 := r.today()
		s.admitted, s.uploaded, s.deleted, s.overCap = c2.Admitted, c2.Uploaded, c2.Deleted, c2.OverCap
		ackMu.Lock()
		s.ackedSoFar = acked
		ackMu.Unlock()
		s.pending = num(r.status(), "outbox", "pending")
		samples = append(samples, s)
		t.Logf("day %d (%s): RSS %.1f MiB, goroutines %d, open files %d, store %.0f KiB; photos %+v; artifacts acked so far %d, pending %d",
			day, c2.Day, s.rssMiB, s.goroutines, s.fds, s.storeKiB, c2, s.ackedSoFar, s.pending)
	}
	r.stop()
	checkStore(t, r)
	// Flat: the last day against the second (the first warms up).
	first, last := samples[1], samples[len(samples)-1]
	if last.rssMiB > first.rssMiB*1.5+8 {
		t.Errorf("RSS grew from %.1f to %.1f MiB", first.rssMiB, last.rssMiB)
	}
	if last.fds > first.fds+8 {
		t.Errorf("open files grew from %d to %d", first.fds, last.fds)
	}
	if last.goroutines > first.goroutines+20 {
		t.Errorf("goroutines grew from %d to %d", first.goroutines, last.goroutines)
	}
	if growth := last.storeKiB - first.storeKiB; growth > 4096 {
		t.Errorf("store grew by %.0f KiB in %d days", growth, days-2)
	}
	var rows []string
	for _, s := range samples {
		rows = append(rows, "| "+strconv.Itoa(s.day)+" | "+strconv.FormatFloat(s.rssMiB, 'f', 1, 64)+" | "+strconv.Itoa(s.goroutines)+" | "+
			strconv.Itoa(s.fds)+" | "+strconv.FormatFloat(s.storeKiB, 'f', 0, 64)+" | "+strconv.Itoa(s.admitted)+"/"+strconv.Itoa(s.overCap)+"/"+
			strconv.Itoa(s.uploaded)+"/"+strconv.Itoa(s.deleted)+" |")
	}
	t.Logf("day | RSS MiB | goroutines | open files | store KiB | admitted/over_cap/uploaded/deleted\n%s", strings.Join(rows, "\n"))
}

func procKBT(t *testing.T, pid int, field string) int {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

func goroutines(t *testing.T, r *rig) int {
	resp, err := unixClient(r.socket).Get("http://diag/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "go_goroutines ") {
			n, _ := strconv.ParseFloat(strings.TrimPrefix(l, "go_goroutines "), 64)
			return int(n)
		}
	}
	return -1
}
