// Package version tells which build a binary is, from the build
// information the Go toolchain embeds (module version, VCS revision and
// time, a modified work tree). Every binary's -version prints it, and the
// daemon exports it as the aibo_build_info metric. It reads nothing but
// runtime/debug and must never depend on another package of the agent.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Build is what a binary knows of its own build.
type Build struct {
	// Version is the module's when it was built as a tagged module, else
	// "devel".
	Version string
	// Revision is the VCS revision (12 hex digits), "" when the build was
	// not stamped; Time its commit time; Modified a work tree with
	// changes not committed.
	Revision, Time string
	Modified       bool
	GoVersion      string
	GOOS, GOARCH   string
}

// Info reads the running binary's build.
func Info() Build {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return Build{Version: "unknown", GoVersion: runtime.Version(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH}
	}
	return fromInfo(info)
}

func fromInfo(info *debug.BuildInfo) Build {
	b := Build{Version: info.Main.Version, GoVersion: info.GoVersion, GOOS: runtime.GOOS, GOARCH: runtime.GOARCH}
	if b.Version == "" || b.Version == "(devel)" {
		b.Version = "devel"
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		case "GOOS":
			b.GOOS = s.Value
		case "GOARCH":
			b.GOARCH = s.Value
		}
	}
	if len(b.Revision) > 12 {
		b.Revision = b.Revision[:12]
	}
	return b
}

// Commit is the revision, with "-dirty" for a modified work tree; ""
// when the build was not stamped.
func (b Build) Commit() string {
	if b.Revision != "" && b.Modified {
		return b.Revision + "-dirty"
	}
	return b.Revision
}

// String is one line: "NAME VERSION (REVISION, TIME[, modified]) GOVERSION
// GOOS/GOARCH". VERSION is the module's when it was built as a tagged
// module, else "devel"; the revision comes from the VCS stamp.
func String(name string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return fmt.Sprintf("%s unknown (no build information) %s/%s", name, runtime.GOOS, runtime.GOARCH)
	}
	return format(name, info)
}

func format(name string, info *debug.BuildInfo) string {
	b := fromInfo(info)
	vcs := ""
	if b.Revision != "" {
		vcs = " (" + b.Revision
		if b.Time != "" {
			vcs += ", " + b.Time
		}
		if b.Modified {
			vcs += ", modified"
		}
		vcs += ")"
	}
	return fmt.Sprintf("%s %s%s %s %s/%s", name, b.Version, vcs, b.GoVersion, b.GOOS, b.GOARCH)
}
