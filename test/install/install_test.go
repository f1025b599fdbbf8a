//go:build installtest

package install

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/paths"
	"github.com/aibo-privacy/aibo-privacyd/internal/pgm"
	"github.com/aibo-privacy/aibo-privacyd/internal/readme"
	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
	"github.com/aibo-privacy/aibo-privacyd/packaging"
)

var (
	archFlag = flag.String("arch", runtime.GOARCH, "the packages' architecture (amd64, or arm64 under qemu-user)")
	baseFlag = flag.String("base", "", "the Debian 12 base root as a tar (scripts/install-test.sh makes it)")
	debsFlag = flag.String("debs", "../../build/deb", "folder of the packages make deb built")
	aptFlag  = flag.String("apt-cache", "", "folder kept between runs for apt's downloads")
)

// The packages built from this tree, installed with apt into a fresh
// Debian 12 root, run the story the way the robot runs them: the README's
// install commands (apt install, the config edited, the service
// restarted, aiboctl status, systemd-analyze verify), the daemon started as
// its unit starts it, with the installed config (only the broker's port
// changed), the installed worker and face nets, against a Mosquitto inside
// the root; the README's upgrade keeping the config and the state; then
// purged, leaving nothing.
func TestInstalledPackagesRunTheStoryAndPurgeLeavesNothing(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("make install-test runs as root (debootstrap's root, mounts, a system account)")
	}
	if *baseFlag == "" {
		t.Fatal("no -base: run make install-test (scripts/install-test.sh)")
	}
	blocks := readme.For(t)
	if len(blocks) != 2 {
		t.Fatalf("%d README blocks for this test, want the install and the upgrade", len(blocks))
	}
	began := time.Now()
	step := func(format string, args ...any) {
		t.Helper()
		t.Logf("[%5.0fs] "+format, append([]any{time.Since(began).Seconds()}, args...)...)
	}
	native := *archFlag == runtime.GOARCH
	r := newRoot(t, *baseFlag, *aptFlag)
	before := map[string]bool{}
	for _, p := range r.files() {
		before[p] = true
	}
	debs := map[string]string{"VERSION": newest(t, paths.Package, *archFlag), "VERSION/models": newest(t, paths.ModelsPackage, "all")}
	version := strings.TrimSpace(run(t, "dpkg-deb", "-f", debs["VERSION"], "Version"))
	debs["NEWVERSION"], debs["NEWVERSION/models"] = upgraded(t, debs["VERSION"], debs["VERSION/models"], version+"+up1")
	os.MkdirAll(r.path("/root/debs"), 0o755)
	for k, p := range debs {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		inside := "/root/debs/" + filepath.Base(p)
		os.WriteFile(r.path(inside), raw, 0o644)
		debs[k] = inside
	}
	step("debootstrap root unpacked; apt-get update; the test's broker (mosquitto) installed")
	r.apt("update")
	r.apt("install", "--no-install-recommends", "mosquitto")

	var (
		d      *daemon
		broker *proc
		b      *testbroker.Broker
		url    string
	)
	x := &readmeRun{t: t, r: r, debs: debs,
		edit: func(file string) {
			// The operator's edit here: the broker's port, nothing else.
			if file != paths.ConfigFile {
				t.Fatalf("the README edits %s, not the installed config %s", file, paths.ConfigFile)
			}
			port := testbroker.FreePort(t)
			url = "tcp://127.0.0.1:" + strconv.Itoa(port)
			os.WriteFile(r.path("/root/broker.conf"), []byte(fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nmax_packet_size %d\n", port, testbroker.MaxPacketSize)), 0o644)
			broker = r.start("mosquitto", nil, "mosquitto", "-c", "/root/broker.conf")
			b = testbroker.Attach(t, url, testbroker.MaxPacketSize)
			cfgFile := r.path(paths.ConfigFile)
			shipped, err := os.ReadFile(cfgFile)
			if err != nil {
				t.Fatal(err)
			}
			edited := strings.Replace(string(shipped), "tcp://127.0.0.1:1883", url, 1)
			if changed := diffLines(string(shipped), edited); changed != 1 {
				t.Fatalf("changing the broker's port changed %d lines of the installed config", changed)
			}
			os.WriteFile(cfgFile, []byte(edited), 0o644)
		},
		restart: func() {
			if d != nil {
				d.stop(t, 10*time.Second)
			}
			d = startDaemon(t, r)
			step("the daemon sent READY=1 (NOTIFY_SOCKET) as %s", paths.User)
		},
	}
	x.block(blocks[0])
	if d == nil {
		t.Fatal("the README's install never restarts the service")
	}
	step("README install done: %s", strings.Join(strings.Fields(r.run("dpkg-query", "-W", paths.Package, paths.ModelsPackage)), " "))
	uid, _ := r.ids(paths.User)
	for _, p := range []string{paths.SpoolDir + "/photos", paths.SpoolDir + "/frames", "/etc/systemd/system/multi-user.target.wants/" + filepath.Base(paths.Unit)} {
		if _, err := os.Lstat(r.path(p)); err != nil {
			t.Fatalf("after install: %v", err)
		}
	}

	device := "aibo-0001"
	app := newApp(t, b, device)
	app.must("policy", "accept_policy", map[string]any{"version": "2026-11"})
	app.must("photos-on", "set_features", map[string]any{"auto_photo": true})
	app.must("consent", "grant_consent", map[string]any{"subject_id": "alice", "display_name": "Alice", "granted_by": "self", "scopes": []string{"face_recognition"}})
	step("accept_policy, auto_photo on, a consent: answered ok")

	if native {
		story(t, r, b, app, d, step)
	} else {
		// qemu-user emulates neither seccomp nor Landlock: the confined
		// worker cannot start. Photos wait in the spool, nothing is lost
		// (contract v3 section 2), and health says why.
		dropAndWait(t, r, "portrait.jpg", readTestdata(t, "photos/genki-smile-file1564.jpg"))
		step("the portrait waits in the spool while the worker cannot start")
		t.Run("health says why the worker cannot run (contract v3 section 7)", func(t *testing.T) {
			// Not just "not checked yet": the reason, Landlock missing.
			h := waitHealth(t, r, 30*time.Second, func(h health) bool {
				return h.Status == "degraded" && !h.Checks["vision"].OK && strings.Contains(h.Checks["vision"].Detail, "Landlock")
			})
			step("health under qemu-user: degraded: %s", h.Checks["vision"].Detail)
		})
	}

	// The README's upgrade: the edited config and the state stay.
	d.stop(t, 10*time.Second)
	x.block(blocks[1])
	if got := strings.Fields(r.run("dpkg-query", "-W", "-f", "${Version}\n", paths.Package, paths.ModelsPackage)); len(got) != 2 || got[0] != version+"+up1" || got[1] != version+"+up1" {
		t.Fatalf("after the upgrade dpkg says %v", got)
	}
	if cfg, _ := os.ReadFile(r.path(paths.ConfigFile)); !strings.Contains(string(cfg), url) {
		t.Fatal("the upgrade did not keep the edited config")
	}
	x.restart()
	waitStatus(t, r, 20*time.Second, "the consent kept across the upgrade", func(s status) bool { return s.Subjects == 1 })
	app.must("after-upgrade", "set_features", map[string]any{"auto_photo": true})
	step("README upgrade to %s+up1: the config as edited, the state kept, the daemon answers", version)

	if native {
		// The face nets vanish: health turns degraded within 5 s, and back.
		t.Run("health follows the face nets (contract v3 section 7)", func(t *testing.T) {
			// Healthy first, so that degraded below is the nets' doing.
			waitHealth(t, r, 30*time.Second, func(h health) bool { return h.Status == "ok" })
			models := r.path(paths.FaceModelsDir)
			if err := os.Rename(models, models+".hidden"); err != nil {
				t.Fatal(err)
			}
			hidden := time.Now()
			h := waitHealth(t, r, 5*time.Second, func(h health) bool { return h.Status == "degraded" && !h.Checks["vision"].OK })
			step("face nets hidden: health degraded after %.1fs: %s", time.Since(hidden).Seconds(), h.Checks["vision"].Detail)
			if h.Checks["vision"].Detail == "" {
				t.Error("the vision check does not say why")
			}
			if err := os.Rename(models+".hidden", models); err != nil {
				t.Fatal(err)
			}
			back := time.Now()
			waitHealth(t, r, 30*time.Second, func(h health) bool { return h.Status == "ok" })
			step("face nets back: health ok after %.1fs", time.Since(back).Seconds())
		})
	}

	// systemd's watchdog is fed while healthy (every WATCHDOG_USEC/2).
	if !d.notify.waitFor("WATCHDOG=1", 20*time.Second, d.running) {
		t.Error("no WATCHDOG=1 on the notify socket")
	}
	stopAll(t, d, broker)
	if !d.notify.has("STOPPING=1") {
		t.Error("no STOPPING=1 on the notify socket at SIGTERM")
	}
	os.RemoveAll(r.path("/root/debs"))
	os.Remove(r.path("/root/broker.conf"))
	purge(t, r, before, uid, step)
}

// story plays the photo story and Patrol through the contract.
func story(t *testing.T, r *root, b *testbroker.Broker, app *app, d *daemon, step func(string, ...any)) {
	t.Helper()
	// A portrait and a scene without people.
	portrait := readTestdata(t, "photos/genki-smile-file1564.jpg")
	drop(t, r, "photos", "portrait.jpg", portrait)
	drop(t, r, "photos", "launch-pad.jpg", readTestdata(t, "photos/rocket.jpg"))
	waitStatus(t, r, 20*time.Second, "both photos admitted", func(s status) bool { return s.PhotosToday.Admitted == 2 })
	cloud := newCloud(t, b, app)
	app.must("select", "select_photos", map[string]any{})
	done := app.event(t, "selection_done", 60*time.Second)
	if done["kept"] != 1.0 || done["deleted"] != 1.0 {
		t.Fatalf("selection_done %v: want the portrait kept and the launch pad deleted", done)
	}
	m, body := cloud.receive(t, "photo", 30*time.Second)
	img, err := jpeg.Decode(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("the uploaded photo is not a JPEG: %v", err)
	}
	orig, _ := jpeg.Decode(bytes.NewReader(portrait))
	if img.Bounds() != orig.Bounds() {
		t.Fatalf("the upload is %v, the portrait %v", img.Bounds(), orig.Bounds())
	}
	waitStatus(t, r, 20*time.Second, "the outbox empty after the ack", func(s status) bool { return s.Outbox.Pending == 0 && s.PhotosToday.Uploaded == 1 })
	step("select_photos: the portrait uploaded (%s, %d bytes) and acked, the launch pad deleted", m.ArtifactID, len(body))

	// Patrol: the consenting person enrolled from camera frames, then seen.
	app.must("patrol-on", "set_features", map[string]any{"patrol": true})
	app.must("enrol", "start_enrollment", map[string]any{"subject_id": "alice"})
	enrolled := false
	for round := 0; round < 6 && !enrolled; round++ {
		for n := 1; n <= 3; n++ {
			drop(t, r, "frames", fmt.Sprintf("f%d%d.png", round, n), frame(t, "s2", n))
		}
		_, enrolled = app.eventWithin("enrollment_completed", 5*time.Second)
	}
	if !enrolled {
		t.Fatalf("the enrollment never completed; the daemon said:\n%s", tail([]byte(d.out.String()), 30))
	}
	drop(t, r, "frames", "probe.png", frame(t, "s2", 4))
	sighting, _ := cloud.receive(t, "sighting", 30*time.Second)
	if sighting.SubjectID != "alice" {
		t.Fatalf("a sighting of %q, want alice", sighting.SubjectID)
	}
	step("Patrol: alice enrolled from camera frames and sighted")
}

// dropAndWait drops a photo and checks it is still waiting 10 s later.
func dropAndWait(t *testing.T, r *root, name string, data []byte) {
	t.Helper()
	dir := r.path(filepath.Join(paths.SpoolDir, "photos"))
	tmp := filepath.Join(dir, "."+name+".part")
	if err := os.WriteFile(tmp, data, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Second)
	if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
		t.Fatalf("the photo did not wait in the spool while images cannot be judged: %v", err)
	}
}

// readmeRun runs the README's install and upgrade lines inside the root.
// Only what ties them to this test is substituted: sudo (the test is
// root), apt's confirmation (-y), the packages' file names (VERSION,
// NEWVERSION and arm64 stand for this build's), the editor (edit) and
// systemctl (restart: the daemon started the way its unit says).
type readmeRun struct {
	t       *testing.T
	r       *root
	debs    map[string]string
	edit    func(file string)
	restart func()
}

var debName = regexp.MustCompile(`^\./aibo-privacyd(-models)?_(VERSION|NEWVERSION)_(arm64|all)\.deb$`)

func (x *readmeRun) block(b readme.Block) {
	x.t.Helper()
	for _, line := range strings.Split(b.Text, "\n") {
		if i := strings.Index(line, "   #"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if f[0] != "sudo" && f[0] != "sudoedit" {
			x.t.Fatalf("README.md:%d: %q: on the robot every line here runs as root", b.Line, line)
		}
		if f[0] == "sudo" {
			f = f[1:]
		}
		switch {
		case f[0] == "sudoedit":
			x.edit(f[1])
		case f[0] == "systemctl" && len(f) == 3 && f[1] == "restart" && f[2] == strings.TrimSuffix(filepath.Base(paths.Unit), ".service"):
			x.restart()
		case f[0] == "apt" || f[0] == "apt-get":
			args := []string{f[0], f[1], "-y"}
			for _, a := range f[2:] {
				if m := debName.FindStringSubmatch(a); m != nil {
					key := m[2]
					if m[1] != "" {
						key += "/models"
					}
					a = x.debs[key]
				}
				args = append(args, a)
			}
			out, err := x.r.command([]string{"DEBIAN_FRONTEND=noninteractive"}, true, args...).CombinedOutput()
			if err != nil {
				x.t.Fatalf("README.md:%d: %s: %v\n%s", b.Line, strings.Join(args, " "), err, tail(out, 40))
			}
		default:
			out, err := x.r.command(nil, false, f...).CombinedOutput()
			if err != nil {
				x.t.Fatalf("README.md:%d: %s: %v\n%s", b.Line, line, err, out)
			}
			if f[0] == "systemd-analyze" && strings.TrimSpace(string(out)) != "" {
				x.t.Errorf("README.md:%d: %s says:\n%s", b.Line, line, out)
			}
		}
	}
}

// upgraded repacks both packages as version (a later build).
func upgraded(t *testing.T, agent, models, version string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	repack := func(pkg string, fix func(string) string) string {
		tree := filepath.Join(dir, "tree")
		os.RemoveAll(tree)
		run(t, "dpkg-deb", "-R", pkg, tree)
		control := filepath.Join(tree, "DEBIAN/control")
		raw, _ := os.ReadFile(control)
		c := regexp.MustCompile(`(?m)^Version: .*$`).ReplaceAllString(string(raw), "Version: "+version)
		os.WriteFile(control, []byte(fix(c)), 0o644)
		name := strings.Replace(filepath.Base(pkg), "_"+strings.Split(filepath.Base(pkg), "_")[1]+"_", "_"+version+"_", 1)
		out := filepath.Join(dir, name)
		run(t, "dpkg-deb", "--root-owner-group", "-Zxz", "-z1", "--build", tree, out)
		return out
	}
	old := strings.Split(filepath.Base(agent), "_")[1]
	return repack(agent, func(c string) string {
			return strings.Replace(c, paths.ModelsPackage+" (= "+old+")", paths.ModelsPackage+" (= "+version+")", 1)
		}), repack(models, func(c string) string {
			return strings.ReplaceAll(c, "(<< "+old+")", "(<< "+version+")")
		})
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// stopAll stops the daemon within the unit's TimeoutStopSec, then the broker.
func stopAll(t *testing.T, d *daemon, broker *proc) {
	t.Helper()
	d.stop(t, 10*time.Second)
	if d.cmd.ProcessState != nil && !d.cmd.ProcessState.Success() {
		t.Errorf("the daemon exited with %v at SIGTERM", d.cmd.ProcessState)
	}
	broker.stop(t, 5*time.Second)
}

// purge purges both packages and checks that nothing of them is left:
// no file named after the agent, nothing owned by its account (which
// Debian keeps, as it keeps every system account), no package in dpkg's
// database.
func purge(t *testing.T, r *root, before map[string]bool, uid int, step func(string, ...any)) {
	t.Helper()
	r.apt("purge", paths.Package, paths.ModelsPackage)
	if out, err := r.command(nil, false, "dpkg-query", "-W", "-f", "${Package} ${Status}\n", paths.Package, paths.ModelsPackage).CombinedOutput(); err == nil && strings.Contains(string(out), "installed") {
		t.Errorf("after purge dpkg still knows:\n%s", out)
	}
	var left []string
	for _, p := range r.files() {
		if !before[p] && strings.Contains(p, "aibo") {
			left = append(left, p)
		}
	}
	for _, p := range r.owned(uid) {
		if !strings.Contains(p, "aibo") {
			left = append(left, p)
		}
	}
	if len(left) > 0 {
		t.Errorf("purge left %d paths of the agent:\n%s", len(left), strings.Join(left, "\n"))
	}
	step("purged: nothing named after the agent and nothing owned by %s is left (the account stays, as Debian keeps system accounts)", paths.User)
}

// newest is the most recently built package name_*_arch.deb.
func newest(t *testing.T, name, arch string) string {
	t.Helper()
	f, err := packaging.Newest(*debsFlag, name, arch)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// diffLines counts the lines that differ between two texts of as many lines.
func diffLines(a, b string) int {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	if len(la) != len(lb) {
		return -1
	}
	n := 0
	for i := range la {
		if la[i] != lb[i] {
			n++
		}
	}
	return n
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../../testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// drop writes a file into the spool the way the camera does (a hidden
// name, then a rename) and waits until the daemon took it.
func drop(t *testing.T, r *root, kind, name string, data []byte) {
	t.Helper()
	dir := r.path(filepath.Join(paths.SpoolDir, kind))
	tmp := filepath.Join(dir, "."+name+".part")
	if err := os.WriteFile(tmp, data, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(dir, name)); os.IsNotExist(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/%s still in the spool after 10 s", kind, name)
		}
	}
}

// frame is a 1280x720 camera frame with an ORL face (92x112, committed
// under testdata/faces) tripled in its middle, its edge pixels carried
// outwards as a scene continues around a head.
func frame(t *testing.T, person string, n int) []byte {
	t.Helper()
	face, err := pgm.Decode(bytes.NewReader(readTestdata(t, fmt.Sprintf("faces/orl-%s-%d.pgm", person, n))))
	if err != nil {
		t.Fatal(err)
	}
	const scale, margin = 3, 60
	w, h := face.Rect.Dx()*scale, face.Rect.Dy()*scale
	img := image.NewGray(image.Rect(0, 0, 1280, 720))
	for i := range img.Pix {
		img.Pix[i] = 60
	}
	x0, y0 := (1280-w)/2, (720-h)/2
	for y := -margin; y < h+margin; y++ {
		for x := -margin; x < w+margin; x++ {
			fx, fy := min(max(x, 0), w-1)/scale, min(max(y, 0), h-1)/scale
			img.SetGray(x0+x, y0+y, color.Gray{Y: face.GrayAt(face.Rect.Min.X+fx, face.Rect.Min.Y+fy).Y})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// health is the answer of GET /v1/health (contract section 7).
type health struct {
	Status string `json:"status"`
	Checks map[string]struct {
		OK     bool   `json:"ok"`
		Detail string `json:"detail"`
	} `json:"checks"`
}

// ctl runs the installed aiboctl inside the root as root (uid 0 is in the
// packaged diag.allowed_uids) and returns its standard output; exit 1
// (degraded) is an answer, not an error.
func ctl(t *testing.T, r *root, args ...string) []byte {
	t.Helper()
	cmd := r.command(nil, false, append([]string{paths.Ctl}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); err != nil && !(ok && ee.ExitCode() == 1) {
		t.Fatalf("aiboctl %v: %v\n%s%s", args, err, out, stderr.String())
	}
	return out
}

func readHealth(t *testing.T, r *root) health {
	t.Helper()
	var h health
	if out := ctl(t, r, "health", "--json"); json.Unmarshal(out, &h) != nil {
		t.Fatalf("aiboctl health --json: %s", out)
	}
	return h
}

func waitHealth(t *testing.T, r *root, within time.Duration, ok func(health) bool) health {
	t.Helper()
	var h health
	for deadline := time.Now().Add(within); ; time.Sleep(100 * time.Millisecond) {
		if h = readHealth(t, r); ok(h) {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("health within %v: %+v", within, h)
		}
	}
}

// status is the part of GET /v1/status the story reads.
type status struct {
	Subjects    int `json:"subjects"`
	PhotosToday struct {
		Admitted int `json:"admitted"`
		Uploaded int `json:"uploaded"`
	} `json:"photos_today"`
	Outbox struct {
		Pending int `json:"pending"`
	} `json:"outbox"`
}

func waitStatus(t *testing.T, r *root, within time.Duration, what string, ok func(status) bool) {
	t.Helper()
	var out []byte
	for deadline := time.Now().Add(within); ; time.Sleep(200 * time.Millisecond) {
		var s status
		out = ctl(t, r, "status", "--json")
		if json.Unmarshal(out, &s) == nil && ok(s) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; status:\n%s", what, within, out)
		}
	}
}

// app plays the owner's phone app through the broker.
type app struct {
	c               *testbroker.Client
	prefix          string
	results, events *testbroker.Sub
	t               *testing.T
}

func newApp(t *testing.T, b *testbroker.Broker, device string) *app {
	c := b.Client(t)
	p := "aibo/" + device + "/"
	return &app{c: c, prefix: p, t: t, results: c.Subscribe(t, p+"cmd/result"), events: c.Subscribe(t, p+"events")}
}

// must sends a command, again with the same id until it is answered (a
// command sent before the daemon's session subscribed is lost; a repeated
// id gets the stored result), and fails unless the answer is ok.
func (a *app) must(id, typ string, payload any) {
	a.t.Helper()
	raw, _ := json.Marshal(map[string]any{"id": id, "type": typ, "issued_at": time.Now().UTC().Format(time.RFC3339), "payload": payload})
	var res struct {
		ID    string          `json:"id"`
		OK    bool            `json:"ok"`
		Error json.RawMessage `json:"error"`
	}
	match := func(m testbroker.Message) bool { return json.Unmarshal(m.Payload, &res) == nil && res.ID == id }
	for try := 0; ; try++ {
		a.c.Publish(a.t, a.prefix+"cmd", raw, false)
		if a.results.WaitWithin(2*time.Second, match) {
			break
		}
		if try == 10 {
			a.t.Fatalf("%s %s: no result", typ, id)
		}
	}
	if !res.OK {
		a.t.Fatalf("%s %s refused: %s", typ, id, res.Error)
	}
}

func (a *app) eventWithin(typ string, within time.Duration) (map[string]any, bool) {
	var ev map[string]any
	ok := a.events.WaitWithin(within, func(m testbroker.Message) bool {
		return json.Unmarshal(m.Payload, &ev) == nil && ev["type"] == typ
	})
	return ev, ok
}

func (a *app) event(t *testing.T, typ string, within time.Duration) map[string]any {
	t.Helper()
	ev, ok := a.eventWithin(typ, within)
	if !ok {
		t.Fatalf("no %s event within %v", typ, within)
	}
	return ev
}

// cloud receives artifacts, checks them against their manifest and acks
// them (contract section 4).
type cloud struct {
	a            *app
	metas, parts *testbroker.Sub
}

type manifest struct {
	ArtifactID string `json:"artifact_id"`
	Kind       string `json:"kind"`
	Size       int    `json:"size"`
	SHA256     string `json:"sha256"`
	Chunks     int    `json:"chunks"`
	SubjectID  string `json:"subject_id"`
}

func newCloud(t *testing.T, b *testbroker.Broker, a *app) *cloud {
	c := b.Client(t)
	return &cloud{a: a, metas: c.Subscribe(t, a.prefix+"artifacts/+/meta"), parts: c.Subscribe(t, a.prefix+"artifacts/+/chunk/+")}
}

func (c *cloud) receive(t *testing.T, kind string, within time.Duration) (manifest, []byte) {
	t.Helper()
	var m manifest
	c.metas.WaitFor(t, within, func(msg testbroker.Message) bool {
		return json.Unmarshal(msg.Payload, &m) == nil && m.Kind == kind
	})
	chunks := map[int][]byte{}
	for len(chunks) < m.Chunks {
		msg := c.parts.WaitFor(t, within, func(msg testbroker.Message) bool {
			return strings.Contains(msg.Topic, "/artifacts/"+m.ArtifactID+"/chunk/")
		})
		n, _ := strconv.Atoi(msg.Topic[strings.LastIndex(msg.Topic, "/")+1:])
		chunks[n] = msg.Payload
	}
	var body []byte
	for i := 0; i < m.Chunks; i++ {
		body = append(body, chunks[i]...)
	}
	sum := sha256.Sum256(body)
	if len(body) != m.Size || hex.EncodeToString(sum[:]) != m.SHA256 {
		t.Fatalf("artifact %s: %d bytes, sha256 %x; the manifest says %d, %s", m.ArtifactID, len(body), sum, m.Size, m.SHA256)
	}
	c.a.c.Publish(t, c.a.prefix+"artifacts/"+m.ArtifactID+"/ack", []byte(`{"ok":true}`), false)
	return m, body
}
