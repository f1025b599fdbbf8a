// Command bestshot scores, selects and shows photos offline, with the same
// scorer the vision worker runs (capture/score), the daemon's selection
// (capture.Select) and the daemon's defaults (photos.keep_per_day 10,
// photos.min_score 0.25). It reads plain files and needs no daemon.
//
//	bestshot score [--json] FILE|DIR...       breakdown table (or JSON)
//	bestshot select [-keep N] [-min S] DIR    what the daemon would keep, and why not the rest
//	bestshot sheet [-o sheet.png] [-keep N] [-min S] DIR   contact sheet
//
// Common flags: -models DIR (OpenCV cascades), -face-models DIR (the
// converted face nets, make setup writes them to build/models), -weights
// FILE (JSON weights, as the daemon stores them; default:
// weights.Defaults()), -timezone ZONE (the home's IANA zone, as the
// daemon's timezone key; default: this machine's). A photo's time of day
// is its file's modification time on the clock of that zone.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/capture"
	"github.com/aibo-privacy/aibo-privacyd/capture/score"
	"github.com/aibo-privacy/aibo-privacyd/capture/score/weights"
	"github.com/aibo-privacy/aibo-privacyd/config"
	"github.com/aibo-privacy/aibo-privacyd/internal/paths"
	"github.com/aibo-privacy/aibo-privacyd/internal/version"
)

const usage = `usage:
  bestshot score [--json] FILE|DIR...
  bestshot select [-keep N] [-min S] DIR
  bestshot sheet [-o sheet.png] [-keep N] [-min S] DIR
  bestshot -version
flags for every command: -models DIR, -face-models DIR, -weights FILE.json,
-timezone ZONE (the home's, as the daemon's timezone key; default: this
machine's): a photo's time of day is its file's modification time there.
-keep and -min default to the daemon's photos.keep_per_day (%d) and
photos.min_score (%.2f); a photo below -min is never kept.`

func usageText() string {
	d := config.Default().Photos
	return fmt.Sprintf(usage, d.KeepPerDay, d.MinScore)
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bestshot:", err)
		if errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, usageText())
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("bad usage")

// NearDuplicateBits: photos whose perceptual hashes differ in at most this
// many of 64 bits show the same moment (the daemon's own threshold).
const NearDuplicateBits = capture.NearDuplicateBits

type options struct {
	models, faceModels, weightsFile, out, zone string
	keep                                       int
	min                                        float64
	json                                       bool
}

func run(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usageText())
		return nil
	case "-version", "--version", "version":
		fmt.Fprintln(stdout, version.String("bestshot"))
		return nil
	}
	cmd := args[0]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var o options
	defaults := config.Default().Photos
	fs.StringVar(&o.models, "models", score.DefaultModelDir, "OpenCV cascades folder")
	fs.StringVar(&o.faceModels, "face-models", paths.FaceModels(), "converted face nets folder (default: a checkout's build/models, else the installed ones)")
	fs.StringVar(&o.weightsFile, "weights", "", "weights JSON (default: built-in defaults)")
	fs.BoolVar(&o.json, "json", false, "JSON output (score)")
	fs.IntVar(&o.keep, "keep", defaults.KeepPerDay, "photos to keep (select, sheet)")
	fs.Float64Var(&o.min, "min", defaults.MinScore, "lowest score kept (select, sheet)")
	fs.StringVar(&o.out, "o", "sheet.png", "contact sheet file (sheet)")
	fs.StringVar(&o.zone, "timezone", "Local", "the home's IANA time zone (default: this machine's)")
	// Flags may come before or after the operands.
	var operands []string
	rest := args[1:]
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprintln(stdout, usageText())
				return nil
			}
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		if fs.NArg() == 0 {
			break
		}
		operands = append(operands, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	switch cmd {
	case "score":
		if len(operands) == 0 {
			return fmt.Errorf("%w: score needs files or folders", errUsage)
		}
	case "select", "sheet":
		if len(operands) != 1 {
			return fmt.Errorf("%w: %s needs one folder", errUsage, cmd)
		}
		if o.keep < 1 {
			return fmt.Errorf("%w: -keep must be at least 1", errUsage)
		}
		if o.min < 0 || o.min > 1 {
			return fmt.Errorf("%w: -min must be within 0..1", errUsage)
		}
	default:
		return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
	loc, err := time.LoadLocation(o.zone)
	if err != nil {
		return fmt.Errorf("%w: -timezone %q is not an IANA time zone", errUsage, o.zone)
	}
	opts := score.Options{ModelDir: o.models, FaceModels: o.faceModels}
	if o.weightsFile != "" {
		data, err := os.ReadFile(o.weightsFile)
		if err != nil {
			return err
		}
		w, err := weights.Parse(data)
		if err != nil {
			return err
		}
		opts.Weights = &w
	}
	var files []string
	if cmd == "score" {
		if files, err = expand(operands); err != nil {
			return err
		}
	}
	score.SetThreads(1)
	s, err := score.New(opts)
	if err != nil {
		return err
	}
	defer s.Close()
	switch cmd {
	case "score":
		photos := scoreFiles(s, files, loc)
		if o.json {
			return writeJSON(stdout, photos)
		}
		writeTable(stdout, photos)
		for _, p := range photos {
			if p.Err != "" {
				return fmt.Errorf("%d of %d files could not be scored", countErrs(photos), len(photos))
			}
		}
		return nil
	case "select":
		photos, err := scoreDir(s, operands[0], loc)
		if err != nil {
			return err
		}
		picks := pick(photos, o.keep, o.min)
		writeSelection(stdout, photos, picks)
		return nil
	default: // sheet
		photos, err := scoreDir(s, operands[0], loc)
		if err != nil {
			return err
		}
		picks := pick(photos, o.keep, o.min)
		if err := writeSheet(o.out, photos, picks); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s: %d photos, %d picked\n", o.out, len(photos), countPicked(picks))
		return nil
	}
}

// expand replaces each folder among the operands by its photos (sorted);
// files are kept as given.
func expand(operands []string) ([]string, error) {
	var files []string
	for _, op := range operands {
		st, err := os.Stat(op)
		if err != nil || !st.IsDir() {
			files = append(files, op) // a missing file is reported as a row
			continue
		}
		inDir, err := photosIn(op)
		if err != nil {
			return nil, err
		}
		files = append(files, inDir...)
	}
	return files, nil
}

// photo is one scored file.
type photo struct {
	File   string       `json:"file"`
	Err    string       `json:"error,omitempty"`
	Result score.Result `json:"-"`
	// JSON view of Result.
	Score     float64            `json:"score"`
	Breakdown map[string]float64 `json:"breakdown,omitempty"`
	Measures  map[string]float64 `json:"measures,omitempty"`
	Faces     []jsonFace         `json:"faces,omitempty"`
	PHash     string             `json:"phash,omitempty"`
	Width     int                `json:"width,omitempty"`
	Height    int                `json:"height,omitempty"`
	TakenAt   time.Time          `json:"taken_at"`
}

type jsonFace struct {
	X         int     `json:"x"`
	Y         int     `json:"y"`
	W         int     `json:"w"`
	H         int     `json:"h"`
	Smile     float64 `json:"smile"`
	EyesOpen  float64 `json:"eyes_open"`
	Sharpness float64 `json:"sharpness"`
}

// scoreFiles scores each file; the file's modification time, on the
// clock of loc, stands for when it was taken.
func scoreFiles(s *score.Scorer, files []string, loc *time.Location) []photo {
	out := make([]photo, 0, len(files))
	for _, f := range files {
		p := photo{File: f}
		data, err := os.ReadFile(f)
		if err == nil {
			if st, serr := os.Stat(f); serr == nil {
				p.TakenAt = st.ModTime().In(loc)
			}
			p.Result, err = s.Score(data, p.TakenAt)
		}
		if err != nil {
			p.Err = err.Error()
		} else {
			r := p.Result
			p.Score, p.Breakdown, p.Measures, p.Width, p.Height = r.Score, r.Breakdown, r.Measures, r.Width, r.Height
			p.PHash = fmt.Sprintf("%016x", r.PHash)
			for _, f := range r.Faces {
				p.Faces = append(p.Faces, jsonFace{f.Box.Min.X, f.Box.Min.Y, f.Box.Dx(), f.Box.Dy(), f.Smile, f.EyesOpen, f.Sharpness})
			}
		}
		out = append(out, p)
	}
	return out
}

func scoreDir(s *score.Scorer, dir string, loc *time.Location) ([]photo, error) {
	files, err := photosIn(dir)
	if err != nil {
		return nil, err
	}
	return scoreFiles(s, files, loc), nil
}

// photosIn lists the .jpg, .jpeg and .png files of dir (any case), as
// the daemon's spool would take them.
func photosIn(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		switch strings.ToLower(filepath.Ext(e.Name())) {
		case ".jpg", ".jpeg", ".png":
			if e.Type().IsRegular() {
				files = append(files, filepath.Join(dir, e.Name()))
			}
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no .jpg, .jpeg or .png files in %s", dir)
	}
	return files, nil
}

func countErrs(ps []photo) int {
	n := 0
	for _, p := range ps {
		if p.Err != "" {
			n++
		}
	}
	return n
}

func writeJSON(w io.Writer, ps []photo) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(ps)
}

// shortNames are the table's column heads.
var shortNames = map[string]string{
	weights.Faces: "faces", weights.FaceSize: "size", weights.Placement: "place", weights.Smile: "smile",
	weights.EyesOpen: "eyes", weights.Sharpness: "sharp", weights.Noise: "noise", weights.Exposure: "expo",
	weights.TimeOfDay: "time",
}

func writeTable(w io.Writer, ps []photo) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := []string{"score", "n"}
	for _, f := range weights.Features {
		head = append(head, shortNames[f])
	}
	fmt.Fprintf(tw, "%s\tfile\t\n", strings.Join(head, "\t"))
	for _, p := range ps {
		if p.Err != "" {
			fmt.Fprintf(tw, "error%s\t%s: %s\t\n", strings.Repeat("\t", len(head)-1), p.File, p.Err)
			continue
		}
		cells := []string{fmt.Sprintf("%.3f", p.Score), fmt.Sprint(len(p.Faces))}
		for _, f := range weights.Features {
			cells = append(cells, fmt.Sprintf("%.2f", p.Breakdown[f]))
		}
		fmt.Fprintf(tw, "%s\t%s\t\n", strings.Join(cells, "\t"), p.File)
	}
	tw.Flush()
}

// verdict says what the selection did with one photo.
type verdict struct {
	rank   int    // 1-based among the picked, 0 when not picked
	reason string // why not
}

// pick decides as the daemon's selection does (capture.Select: at most
// keep photos scoring at least min, never two near-duplicates, spread over
// the day by their modification times) and says why each other photo was
// not kept.
func pick(ps []photo, keep int, min float64) []verdict {
	v := make([]verdict, len(ps))
	var cands []capture.Candidate
	for i, p := range ps {
		if p.Err != "" {
			v[i].reason = "invalid"
			continue
		}
		cands = append(cands, capture.Candidate{PhotoID: fmt.Sprint(i), TakenAt: p.TakenAt, Score: p.Score, PHash: p.Result.PHash})
	}
	kept, _ := capture.Select(cands, keep, min)
	var picked []int
	for rank, id := range kept {
		var i int
		fmt.Sscan(id, &i)
		v[i].rank = rank + 1
		picked = append(picked, i)
	}
	for i, p := range ps {
		if p.Err != "" || v[i].rank > 0 {
			continue
		}
		switch j := dupOf(ps, picked, i); {
		case p.Score < min:
			v[i].reason = fmt.Sprintf("below %.2f", min)
		case j >= 0:
			v[i].reason = "near-duplicate of " + filepath.Base(ps[j].File)
		default:
			v[i].reason = fmt.Sprintf("not in the best %d", keep)
		}
	}
	return v
}

// dupOf returns the picked photo that photo i nearly duplicates, or -1.
func dupOf(ps []photo, picked []int, i int) int {
	for _, j := range picked {
		if capture.NearDuplicate(ps[i].Result.PHash, ps[j].Result.PHash) {
			return j
		}
	}
	return -1
}

func countPicked(v []verdict) int {
	n := 0
	for _, x := range v {
		if x.rank > 0 {
			n++
		}
	}
	return n
}

func writeSelection(w io.Writer, ps []photo, v []verdict) {
	idx := make([]int, len(ps))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		va, vb := v[idx[a]], v[idx[b]]
		if (va.rank > 0) != (vb.rank > 0) {
			return va.rank > 0
		}
		if va.rank > 0 {
			return va.rank < vb.rank
		}
		return ps[idx[a]].Score > ps[idx[b]].Score
	})
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "pick\tscore\tfaces\tfile\tnote")
	for _, i := range idx {
		p, x := ps[i], v[i]
		mark := "-"
		if x.rank > 0 {
			mark = fmt.Sprint(x.rank)
		}
		if p.Err != "" {
			fmt.Fprintf(tw, "%s\t\t\t%s\t%s\n", mark, p.File, p.Err)
			continue
		}
		fmt.Fprintf(tw, "%s\t%.3f\t%d\t%s\t%s\n", mark, p.Score, len(p.Faces), p.File, x.reason)
	}
	tw.Flush()
}
