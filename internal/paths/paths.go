// Package paths is the one place that says where the agent's files live
// once the Debian packages are installed: the programs, the face nets,
// OpenCV's cascades, the configuration, the unit, the state, the spool and
// the diagnostic socket, and the account that owns them. The daemon's
// defaults (config), its worker, aiboctl, bestshot and the packaging
// (packaging/build-deb.sh reads them through tools/paths) all take them
// from here; packaging/paths_test.go fails when the packaged config, the
// unit, the tmpfiles and sysusers snippets, the maintainer scripts, the
// man pages or any other tracked file names an installed path that is not
// one of these.
//
// It owns names only: it never creates, reads or removes a file, except
// that FaceModels looks for a checkout's build/models.
package paths

import (
	"os"
	"path/filepath"
)

// The packages: the agent (one per architecture) and the face nets it
// runs, architecture-independent data of their own.
const (
	Package       = "aibo-privacyd"
	ModelsPackage = "aibo-privacyd-models"
)

// The system account the service runs as (sysusers.d), and the group the
// camera writes the spool with.
const (
	User        = "aibo-privacy"
	CameraGroup = "aibo-camera"
)

// Installed files and folders.
const (
	Daemon = "/usr/sbin/aibo-privacyd"
	Ctl    = "/usr/bin/aiboctl"
	// Worker is the vision worker, the only program linking OpenCV.
	Worker = "/usr/libexec/aibo-privacy/aibo-vision"
	// FaceModelsDir holds the converted face nets and their SHA256SUMS
	// (package aibo-privacyd-models).
	FaceModelsDir = "/usr/share/aibo-privacy/models"
	// OpenCVData is where Debian's opencv-data installs haarcascades/ and
	// lbpcascades/.
	OpenCVData = "/usr/share/opencv4"
	ConfigDir  = "/etc/aibo-privacy"
	ConfigFile = ConfigDir + "/config.yaml"
	// Unit is where Debian 12 keeps packaged units (bookworm's packages
	// still ship under /lib).
	Unit     = "/lib/systemd/system/" + Package + ".service"
	Sysusers = "/usr/lib/sysusers.d/aibo-privacy.conf"
	Tmpfiles = "/usr/lib/tmpfiles.d/aibo-privacy.conf"
	DocDir   = "/usr/share/doc/" + Package
	// LintianOverrides explains the tags lintian reports that do not apply.
	LintianOverrides = "/usr/share/lintian/overrides/" + Package
	// StateDir is data_dir: the store, the keys, the vault, the outbox
	// (the unit's StateDirectory).
	StateDir = "/var/lib/aibo-privacy"
	// SpoolDir is spool_dir, the camera's drop folder (tmpfiles.d).
	SpoolDir = "/run/aibo-camera"
	// RuntimeDir holds the diagnostic socket (the unit's RuntimeDirectory).
	RuntimeDir = "/run/aibo-privacy"
	DiagSocket = RuntimeDir + "/diag.sock"
)

// Shipped lists files the packages install, one for each path above
// that is not made at run time (the state, the spool, the socket) or
// owned by another package (OpenCV's data).
var Shipped = []string{Daemon, Ctl, Worker, FaceModelsDir + "/SHA256SUMS", ConfigFile, Unit,
	Sysusers, Tmpfiles, DocDir + "/copyright", LintianOverrides}

// CheckoutFaceModels is where make setup converts the face nets in a
// checkout, relative to its top.
const CheckoutFaceModels = "build/models"

// All names every installed path above, for the tools and tests that
// check the packaging against them.
func All() map[string]string {
	return map[string]string{
		"DAEMON": Daemon, "CTL": Ctl, "WORKER": Worker,
		"FACE_MODELS_DIR": FaceModelsDir, "OPENCV_DATA": OpenCVData,
		"CONFIG_DIR": ConfigDir, "CONFIG_FILE": ConfigFile, "UNIT": Unit,
		"SYSUSERS": Sysusers, "TMPFILES": Tmpfiles, "DOC_DIR": DocDir,
		"LINTIAN_OVERRIDES": LintianOverrides,
		"STATE_DIR":         StateDir, "SPOOL_DIR": SpoolDir, "RUNTIME_DIR": RuntimeDir,
		"DIAG_SOCKET": DiagSocket,
	}
}

// FaceModels is the face-net folder an offline tool (bestshot, the
// quality reports) uses when none is given: the checkout's build/models
// when the working directory or the program's own folder is inside a
// checkout where make setup converted them, otherwise the installed ones.
func FaceModels() string {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, dir := range starts {
		if found, ok := findUp(dir, filepath.Join(CheckoutFaceModels, "SHA256SUMS")); ok {
			return filepath.Dir(found)
		}
	}
	return FaceModelsDir
}

// WorkerFor is the vision worker a daemon whose binary is exe starts when
// vision.worker is empty: the aibo-vision beside it when there is one (a
// checkout's bin/), otherwise the installed one.
func WorkerFor(exe string) string {
	beside := filepath.Join(filepath.Dir(exe), filepath.Base(Worker))
	if st, err := os.Stat(beside); err == nil && !st.IsDir() {
		return beside
	}
	return Worker
}

// findUp looks for rel in dir and each of its parents.
func findUp(dir, rel string) (string, bool) {
	for {
		p := filepath.Join(dir, rel)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}
