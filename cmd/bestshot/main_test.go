package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/capture/score/synth"
	"github.com/aibo-privacy/aibo-privacyd/internal/readme"
)

const testdata = "../../testdata/score"

// noon is when every test photo was taken (its file's modification
// time): the time-of-day term is then the same whatever the hour and the
// zone the tests run in.
var noon = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// bestshot runs the command with the face nets make setup converts, in
// a home on UTC.
func bestshot(t *testing.T, args ...string) (string, error) {
	t.Helper()
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") && args[0] != "help" {
		extra := []string{"-face-models", "../../build/models"}
		if !slices.Contains(args, "-timezone") {
			extra = append(extra, "-timezone", "UTC")
		}
		args = append(append([]string{args[0]}, extra...), args[1:]...)
	}
	var out bytes.Buffer
	err := run(args, &out)
	return out.String(), err
}

// folder holds the portrait, a brighter re-encoded copy of it (a
// near-duplicate), the coffee scene and a file that is not an image.
func folder(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	portrait, err := os.ReadFile(filepath.Join(testdata, "astronaut.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	coffee, err := os.ReadFile(filepath.Join(testdata, "coffee.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	img, _, err := image.Decode(bytes.NewReader(portrait))
	if err != nil {
		t.Fatal(err)
	}
	copyJPEG := synth.JPEG(synth.Exposure(synth.Blur(synth.RGBA(img), 1.5), 1.3), 75)
	for name, data := range map[string][]byte{
		"portrait.jpg": portrait, "portrait-again.jpg": copyJPEG, "coffee.jpg": coffee, "notes.jpg": []byte("hello"),
	} {
		write(t, filepath.Join(dir, name), data, noon)
	}
	return dir
}

// write makes a photo file taken at when.
func write(t *testing.T, path string, data []byte, when time.Time) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, when, when); err != nil {
		t.Fatal(err)
	}
}

// copyAt copies testdata files into a folder, each taken at when.
func copyAt(t *testing.T, when time.Time, files ...string) []string {
	t.Helper()
	dir := t.TempDir()
	var out []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.Base(f))
		write(t, p, data, when)
		out = append(out, p)
	}
	return out
}

func TestScoreTableAndJSON(t *testing.T) {
	files := copyAt(t, noon, filepath.Join(testdata, "astronaut.jpg"), filepath.Join(testdata, "coffee.jpg"))
	out, err := bestshot(t, append([]string{"score"}, files...)...)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"score", "smile", "sharp", "astronaut.jpg", "coffee.jpg"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	out, err = bestshot(t, "score", files[0], "--json")
	if err != nil {
		t.Fatal(err)
	}
	var got []struct {
		File      string             `json:"file"`
		Score     float64            `json:"score"`
		Breakdown map[string]float64 `json:"breakdown"`
		Faces     []struct{ X, W int }
		PHash     string `json:"phash"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(got) != 1 || got[0].Score <= 0 || len(got[0].Faces) != 1 || len(got[0].PHash) != 16 || len(got[0].Breakdown) < 9 {
		t.Fatalf("json %+v", got)
	}
}

func TestScoreReportsBadFiles(t *testing.T) {
	dir := folder(t)
	out, err := bestshot(t, "score", filepath.Join(dir, "notes.jpg"), filepath.Join(dir, "coffee.jpg"))
	if err == nil || !strings.Contains(out, "not a JPEG or PNG") {
		t.Fatalf("err %v, out:\n%s", err, out)
	}
}

func TestSelectKeepsOneOfNearDuplicates(t *testing.T) {
	dir := folder(t)
	out, err := bestshot(t, "select", "-keep", "2", dir)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 {
		t.Fatalf("want a header and 4 rows:\n%s", out)
	}
	if !strings.HasPrefix(lines[1], "1 ") || !strings.Contains(lines[1], "portrait.jpg") {
		t.Errorf("the sharp portrait should be first:\n%s", out)
	}
	if !strings.HasPrefix(lines[2], "2 ") || !strings.Contains(lines[2], "coffee.jpg") {
		t.Errorf("the coffee scene should be second, the copy being a near-duplicate:\n%s", out)
	}
	if !strings.Contains(out, "near-duplicate of portrait.jpg") {
		t.Errorf("copy not marked as a near-duplicate:\n%s", out)
	}
}

func TestSheet(t *testing.T) {
	dir := folder(t)
	sheet := filepath.Join(t.TempDir(), "sheet.png")
	out, err := bestshot(t, "sheet", "-o", sheet, "-keep", "1", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "4 photos, 1 picked") {
		t.Errorf("output %q", out)
	}
	f, err := os.Open(sheet)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != gap+cols*(thumbW+gap) || b.Dy() != gap+thumbH+panelH+gap {
		t.Fatalf("sheet %v", b)
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"frobnicate"}, {"score"}, {"select"}, {"select", "-keep", "0", "."}, {"sheet", "a", "b"}, {"score", "-nope", "x"}} {
		if _, err := bestshot(t, args...); !errors.Is(err, errUsage) {
			t.Errorf("%q: err = %v, want usage", args, err)
		}
	}
	if _, err := bestshot(t, "select", t.TempDir()); err == nil || !strings.Contains(err.Error(), "no .jpg") {
		t.Errorf("empty folder: %v", err)
	}
}

// bestshot decides as the daemon would with its defaults: rocket.jpg (no
// face, 0.18) is below photos.min_score 0.25 and is never kept.
func TestSelectUsesTheDaemonsDefaults(t *testing.T) {
	dir := filepath.Dir(copyAt(t, noon, "../../testdata/photos/rocket.jpg", filepath.Join(testdata, "astronaut.jpg"))[0])
	out, err := bestshot(t, "select", dir)
	if err != nil {
		t.Fatal(err)
	}
	mustLine(t, out, `^1 +0\.\d+ +1 +\S+astronaut\.jpg *$`)
	mustLine(t, out, `^- +0\.1\d\d +0 +\S+rocket\.jpg +below 0\.25$`)
}

func TestScoreTakesAFolder(t *testing.T) {
	dir := folder(t)
	out, err := bestshot(t, "score", dir)
	if err == nil || !strings.Contains(err.Error(), "1 of 4 files") {
		t.Fatalf("err %v (notes.jpg is not an image)", err)
	}
	for _, f := range []string{"portrait.jpg", "portrait-again.jpg", "coffee.jpg", "notes.jpg"} {
		if !strings.Contains(out, filepath.Join(dir, f)) {
			t.Errorf("%s not scored:\n%s", f, out)
		}
	}
}

func TestHelpIsNotAnError(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}, {"select", "-h"}} {
		out, err := bestshot(t, args...)
		if err != nil || !strings.HasPrefix(out, "usage:") || !strings.Contains(out, "photos.min_score (0.25)") {
			t.Errorf("%q: err %v, out %q", args, err, out)
		}
	}
	if out, err := bestshot(t, "-version"); err != nil || !strings.HasPrefix(out, "bestshot ") {
		t.Errorf("-version: %v %q", err, out)
	}
}

// TestTimeOfDayIsTheHomes (issue 18, item 6): a photo taken at 01:30 UTC
// is 10:30 in Tokyo, daylight; the time-of-day term reads the clock of
// the zone given, as the daemon's timezone key does.
func TestTimeOfDayIsTheHomes(t *testing.T) {
	at := time.Date(2026, 6, 1, 1, 30, 0, 0, time.UTC)
	file := copyAt(t, at, filepath.Join(testdata, "coffee.jpg"))[0]
	for zone, want := range map[string]struct {
		hour int
		term float64
	}{"Asia/Tokyo": {10, 1}, "UTC": {1, 0.2}, "America/Sao_Paulo": {22, 0.6}} {
		out, err := bestshot(t, "score", "--json", "-timezone", zone, file)
		if err != nil {
			t.Fatal(err)
		}
		var got []struct {
			TakenAt   time.Time          `json:"taken_at"`
			Breakdown map[string]float64 `json:"breakdown"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 {
			t.Fatalf("%s: %v\n%s", zone, err, out)
		}
		if got[0].TakenAt.Hour() != want.hour || got[0].Breakdown["time_of_day"] != want.term {
			t.Errorf("%s: taken at %s, time of day %v; want %d:30 and %v", zone, got[0].TakenAt, got[0].Breakdown["time_of_day"], want.hour, want.term)
		}
	}
	if _, err := bestshot(t, "score", "-timezone", "Mars/Olympus", file); !errors.Is(err, errUsage) {
		t.Errorf("a zone that is none: %v, want a usage error", err)
	}
}

func mustLine(t *testing.T, out, pattern string) {
	t.Helper()
	if !regexp.MustCompile(`(?m)` + pattern).MatchString(out) {
		t.Errorf("no line matches %q:\n%s", pattern, out)
	}
}

// The README's bestshot commands, run as written in a scratch checkout
// (bin/ holding this bestshot, testdata/ and build/ of this checkout):
// with no -face-models it finds the checkout's build/models (it used to
// default to the installed folder and fail), keeps the portraits and
// drops the launch pad under photos.min_score.
func TestREADMEBestshotCommandsWorkAsWritten(t *testing.T) {
	block := readme.For(t)[0].Text
	work := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", filepath.Join(work, "bin")+"/", ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, d := range []string{"testdata", "build"} {
		abs, _ := filepath.Abs(filepath.Join("../..", d))
		if err := os.Symlink(abs, filepath.Join(work, d)); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("bash", "-c", "set -euo pipefail\n"+block)
	cmd.Dir = work
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's bestshot commands: %v\n%s", err, out)
	}
	for _, want := range []string{
		`(?m)^1 +0\.\d+ +1 +testdata/photos/genki-smile-file1564\.jpg`,
		`(?m)^- +0\.\d+ +0 +testdata/photos/rocket\.jpg +below 0\.25`,
		`(?m)^ +0\.\d+ +0 +0\.00 +0\.00 +0\.00 +0\.00 +0\.00 .*testdata/photos/rocket\.jpg$`,
	} {
		if !regexp.MustCompile(want).Match(out) {
			t.Errorf("the output lacks %s:\n%s", want, out)
		}
	}
}
