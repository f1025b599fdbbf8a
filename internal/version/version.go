// Package version tells which build a binary is, from the build
// information the Go toolchain embeds (module version, VCS revision and
// time, a modified work tree). Every binary's -version prints it. It reads
// nothing but runtime/debug and must never depend on another package of
// the agent.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

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
	v := info.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	var rev, at, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = ", modified"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	vcs := ""
	if rev != "" {
		vcs = " (" + rev
		if at != "" {
			vcs += ", " + at
		}
		vcs += modified + ")"
	}
	goos, goarch := runtime.GOOS, runtime.GOARCH
	for _, s := range info.Settings {
		switch s.Key {
		case "GOOS":
			goos = s.Value
		case "GOARCH":
			goarch = s.Value
		}
	}
	return fmt.Sprintf("%s %s%s %s %s/%s", name, v, vcs, info.GoVersion, goos, goarch)
}
