package version

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestStringNamesRevisionAndModifiedTree(t *testing.T) {
	info := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "m", Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "b8dd8e908fe79bce089cf796bf67de9896b43bae"},
		{Key: "vcs.time", Value: "2026-12-01T11:23:58Z"},
		{Key: "vcs.modified", Value: "true"},
		{Key: "GOARCH", Value: "arm64"}, {Key: "GOOS", Value: "linux"},
	}}
	got := format("aiboctl", info)
	want := "aiboctl devel (b8dd8e908fe7, 2026-12-01T11:23:58Z, modified) go1.26.8 linux/arm64"
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	if got := format("x", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}}); !strings.HasPrefix(got, "x v1.2.3 go1.26.8") {
		t.Fatalf("tagged module: %q", got)
	}
}

// The daemon's aibo_build_info labels: a modified tree shows in the
// commit, an unstamped build has none.
func TestBuildNamesCommitAndGoVersion(t *testing.T) {
	info := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "b8dd8e908fe79bce089cf796bf67de9896b43bae"}, {Key: "vcs.modified", Value: "true"},
	}}
	b := fromInfo(info)
	if b.Version != "devel" || b.Commit() != "b8dd8e908fe7-dirty" || b.GoVersion != "go1.26.8" {
		t.Fatalf("%+v commit %q", b, b.Commit())
	}
	info.Settings[1].Value = "false"
	if c := fromInfo(info).Commit(); c != "b8dd8e908fe7" {
		t.Fatalf("clean tree: commit %q", c)
	}
	if c := fromInfo(&debug.BuildInfo{GoVersion: "go1.26.8"}).Commit(); c != "" {
		t.Fatalf("unstamped: commit %q", c)
	}
}
