package packaging

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/aibo-privacy/aibo-privacyd/config"
	"github.com/aibo-privacy/aibo-privacyd/internal/paths"
)

// The installed paths come from one place (internal/paths). The daemon's
// defaults, the packaged config, the unit, the account and the spool
// (sysusers.d, tmpfiles.d), the maintainer scripts and the package
// layout must all say the same: the package once installed the face nets
// in a folder named after the agent (aibo-privacy) while the daemon
// looked in one named after the package (aibo-privacyd), and its worker
// never started.
func TestInstalledPathsAgree(t *testing.T) {
	want := func(what, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s is %q, internal/paths says %q", what, got, want)
		}
	}
	def := config.Default()
	want("the default data_dir", def.DataDir, paths.StateDir)
	want("the default spool_dir", def.SpoolDir, paths.SpoolDir)
	want("the default diag.socket", def.Diag.Socket, paths.DiagSocket)
	want("the default vision.models_dir", def.Vision.ModelsDir, paths.OpenCVData)
	want("the default vision.face_models_dir", def.Vision.FaceModelsDir, paths.FaceModelsDir)

	pkg, err := config.Load("config.yaml")
	if err != nil {
		t.Fatalf("the packaged config does not load: %v", err)
	}
	want("the packaged data_dir", pkg.DataDir, paths.StateDir)
	want("the packaged spool_dir", pkg.SpoolDir, paths.SpoolDir)
	want("the packaged diag.socket", pkg.Diag.Socket, paths.DiagSocket)
	want("the packaged vision.worker", pkg.Vision.Worker, paths.Worker)
	want("the packaged vision.models_dir", pkg.Vision.ModelsDir, paths.OpenCVData)
	want("the packaged vision.face_models_dir", pkg.Vision.FaceModelsDir, paths.FaceModelsDir)

	want("the unit's ExecStart", unitValue(t, "ExecStart")[0], paths.Daemon+" -config "+paths.ConfigFile)
	want("the unit's User", unitValue(t, "User")[0], paths.User)
	want("the unit's Group", unitValue(t, "Group")[0], paths.User)
	want("the unit's StateDirectory", "/var/lib/"+unitValue(t, "StateDirectory")[0], paths.StateDir)
	want("the unit's RuntimeDirectory", "/run/"+unitValue(t, "RuntimeDirectory")[0], paths.RuntimeDir)
	if rw := strings.Fields(strings.Join(unitValue(t, "ReadWritePaths"), " ")); !slices.Contains(rw, paths.SpoolDir) {
		t.Errorf("the unit's ReadWritePaths %v lack the spool %s", rw, paths.SpoolDir)
	}
	want("the unit's name", filepath.Base(unitFile), filepath.Base(paths.Unit))

	// systemd-sysusers: the account, with the state as its home, in the
	// camera's group.
	sysusers := lines(t, "debian/sysusers.conf")
	want("sysusers.d's account", field(sysusers, "u", 1), paths.User)
	want("sysusers.d's home", field(sysusers, "u", 4), paths.StateDir)
	want("sysusers.d's group", field(sysusers, "g", 1), paths.CameraGroup)
	want("sysusers.d's membership", field(sysusers, "m", 1)+" "+field(sysusers, "m", 2), paths.User+" "+paths.CameraGroup)
	// systemd-tmpfiles: the spool and its two folders.
	var made []string
	for _, l := range lines(t, "debian/tmpfiles.conf") {
		f := strings.Fields(l)
		if len(f) >= 5 && f[0] == "d" {
			made = append(made, f[1])
			want("tmpfiles.d's owner of "+f[1], f[3]+":"+f[4], paths.User+":"+paths.CameraGroup)
		}
	}
	if !slices.Equal(made, []string{paths.SpoolDir, paths.SpoolDir + "/photos", paths.SpoolDir + "/frames"}) {
		t.Errorf("tmpfiles.d makes %v, not the spool %s with photos/ and frames/", made, paths.SpoolDir)
	}
	// Purge erases what the agent held: its state, the spool (photos the
	// camera dropped) and the socket's folder.
	postrm := read(t, "debian/postrm")
	for _, dir := range []string{paths.StateDir, paths.SpoolDir, paths.RuntimeDir} {
		if !strings.Contains(postrm, `"${DPKG_ROOT:-}`+dir+`"`) {
			t.Errorf("postrm's purge does not erase %s", dir)
		}
	}
	for _, script := range []string{"debian/postinst", "debian/prerm", "debian/postrm"} {
		if s := read(t, script); strings.Contains(s, "aibo-privacyd.service") && !strings.Contains(s, filepath.Base(paths.Unit)) {
			t.Errorf("%s names another unit", script)
		}
	}
	// The layout: build-deb.sh takes every installed path from
	// tools/paths (and names none itself, TestNoOtherInstalledPathIsNamed).
	build := read(t, "build-deb.sh")
	if !strings.Contains(build, `eval "$(go run ./tools/paths)"`) {
		t.Error("build-deb.sh does not read the installed paths from tools/paths")
	}
	for name := range paths.All() {
		if strings.Contains(build, "$root$AIBO_"+name) || strings.Contains(build, "$models$AIBO_"+name) || strings.Contains(build, "${AIBO_"+name) {
			continue
		}
		switch name {
		case "OPENCV_DATA", "STATE_DIR", "SPOOL_DIR", "RUNTIME_DIR", "DIAG_SOCKET", "CONFIG_DIR", "DOC_DIR":
			continue // made at run time, another package's, or a parent of a shipped file
		}
		t.Errorf("build-deb.sh does not install AIBO_%s (%s)", name, paths.All()[name])
	}
}

// In a checkout the face nets live in build/models (make setup converts
// them there): the development config, setup.sh and the demo say so.
func TestTheCheckoutsFaceNetsFolderAgrees(t *testing.T) {
	dev, err := config.Load("../configs/dev.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if dev.Vision.FaceModelsDir != paths.CheckoutFaceModels {
		t.Errorf("configs/dev.yaml: vision.face_models_dir %s, make setup writes %s", dev.Vision.FaceModelsDir, paths.CheckoutFaceModels)
	}
	if setup := read(t, "../scripts/setup.sh"); !strings.Contains(setup, "\nout="+paths.CheckoutFaceModels+"\n") {
		t.Errorf("scripts/setup.sh does not convert the nets into %s", paths.CheckoutFaceModels)
	}
	if demo := read(t, "../scripts/demo.sh"); !strings.Contains(demo, "${FACE_MODELS:-"+paths.CheckoutFaceModels+"}") {
		t.Errorf("scripts/demo.sh does not read the nets from %s", paths.CheckoutFaceModels)
	}
}

// Every installed path a tracked file names is one internal/paths knows
// (or a file inside one of its folders): a typo, or a path changed in one
// place only, fails here instead of on the robot.
func TestNoOtherInstalledPathIsNamed(t *testing.T) {
	known := map[string]bool{}
	for _, p := range paths.All() {
		known[p] = true
		// The folders the package makes for them, when named after the agent.
		for d := filepath.Dir(p); strings.Contains(d, "aibo"); d = filepath.Dir(d) {
			known[d] = true
		}
	}
	// Paths systemd and dpkg derive from the unit's and the packages'
	// names, not installed by us.
	derived := regexp.MustCompile(`^(/etc/systemd/system/([\w.-]+\.wants/)?|/var/lib/systemd/deb-systemd-helper-(enabled|masked)/([\w.-]+\.wants/)?|/sys/fs/cgroup/system\.slice/)` +
		regexp.QuoteMeta(filepath.Base(paths.Unit)) + `$|^/var/lib/private/` + regexp.QuoteMeta(filepath.Base(paths.StateDir)) + `$|^/usr/share/doc/` + regexp.QuoteMeta(paths.ModelsPackage) + `(/.*)?$`)
	ok := func(p string) bool {
		if known[p] || derived.MatchString(p) {
			return true
		}
		for k := range known {
			if strings.HasPrefix(p, k+"/") {
				return true
			}
		}
		return false
	}
	out, err := exec.Command("git", "-C", "..", "ls-files").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	installed := regexp.MustCompile(`(?:^|[^\w./-])(/(?:usr|etc|var|run|lib|sys)/[\w.@+/-]*aibo[\w.@+/-]*)`)
	n := 0
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, "internal/paths/") || strings.HasPrefix(f, "testdata/") || strings.HasSuffix(f, ".sum") {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("..", f))
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(raw), "\n") {
			for _, m := range installed.FindAllStringSubmatch(line, -1) {
				n++
				p := strings.TrimRight(m[1], "./")
				if !ok(p) {
					t.Errorf("%s:%d names %s, which internal/paths does not know", f, i+1, p)
				}
			}
		}
	}
	if n < 20 {
		t.Fatalf("only %d installed paths found in the tracked files: the pattern reads nothing", n)
	}
}

func read(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lines returns the lines of file that are not comments or blank.
func lines(t *testing.T, file string) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(strings.NewReader(read(t, file)))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

var sysusersField = regexp.MustCompile(`"[^"]*"|\S+`)

// field returns field i of the first line of kind (sysusers.d: u, g, m;
// a quoted field is one).
func field(ls []string, kind string, i int) string {
	for _, l := range ls {
		f := sysusersField.FindAllString(l, -1)
		if len(f) > i && f[0] == kind {
			return strings.Trim(f[i], `"`)
		}
	}
	return ""
}
