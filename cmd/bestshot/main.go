// Command bestshot scores, selects and shows photos offline, with the same
// scorer the vision worker runs (capture/score). It reads plain files and
// needs no daemon.
//
//	bestshot score [--json] FILE...          breakdown table (or JSON)
//	bestshot select [-keep N] [-min S] DIR   the best N, one of near-duplicates
//	bestshot sheet [-o sheet.png] [-keep N] DIR   contact sheet
//
// Common flags: -models DIR (OpenCV cascades), -face-models DIR (the
// converted face nets, make setup writes them to build/models), -weights
// FILE (JSON weights, as the daemon stores them; default:
// weights.Defaults()).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/bits"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/capture/score"
	"github.com/aibo-privacy/aibo-privacyd/capture/score/weights"
	"github.com/aibo-privacy/aibo-privacyd/internal/facenet"
)

const usage = `usage:
  bestshot score [--json] FILE...
  bestshot select [-keep N] [-min S] DIR
  bestshot sheet [-o sheet.png] [-keep N] [-min S] DIR
flags for every command: -models DIR, -face-models DIR, -weights FILE.json`

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bestshot:", err)
		if errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, usage)
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("bad usage")

// NearDuplicateBits: photos whose perceptual hashes differ in at most this
// many of 64 bits show the same moment (the daemon's selection uses the
// same threshold).
const NearDuplicateBits = 10

type options struct {
	models, faceModels, weightsFile, out string
	keep                                 int
	min                                  float64
	json                                 bool
}

func run(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	cmd := args[0]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var o options
	fs.StringVar(&o.models, "models", score.DefaultModelDir, "OpenCV cascades folder")
	fs.StringVar(&o.faceModels, "face-models", facenet.DefaultDir, "converted face nets folder (make setup: build/models)")
	fs.StringVar(&o.weightsFile, "weights", "", "weights JSON (default: built-in defaults)")
	fs.BoolVar(&o.json, "json", false, "JSON output (score)")
	fs.IntVar(&o.keep, "keep", 10, "photos to keep (select, sheet)")
	fs.Float64Var(&o.min, "min", 0, "lowest score kept (select, sheet)")
	fs.StringVar(&o.out, "o", "sheet.png", "contact sheet file (sheet)")
	// Flags may come before or after the operands.
	var operands []string
	rest := args[1:]
	for {
		if err := fs.Parse(rest); err != nil {
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
			return fmt.Errorf("%w: score needs files", errUsage)
		}
	case "select", "sheet":
		if len(operands) != 1 {
			return fmt.Errorf("%w: %s needs one folder", errUsage, cmd)
		}
		if o.keep < 1 {
			return fmt.Errorf("%w: -keep must be at least 1", errUsage)
		}
	default:
		return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
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
	score.SetThreads(1)
	s, err := score.New(opts)
	if err != nil {
		return err
	}
	defer s.Close()
	switch cmd {
	case "score":
		photos := scoreFiles(s, operands)
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
		photos, err := scoreDir(s, operands[0])
		if err != nil {
			return err
		}
		picks := pick(photos, o.keep, o.min)
		writeSelection(stdout, photos, picks)
		return nil
	default: // sheet
		photos, err := scoreDir(s, operands[0])
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

// scoreFiles scores each file; the file's modification time stands for
// when it was taken.
func scoreFiles(s *score.Scorer, files []string) []photo {
	out := make([]photo, 0, len(files))
	for _, f := range files {
		p := photo{File: f}
		data, err := os.ReadFile(f)
		if err == nil {
			if st, serr := os.Stat(f); serr == nil {
				p.TakenAt = st.ModTime()
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

func scoreDir(s *score.Scorer, dir string) ([]photo, error) {
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
	return scoreFiles(s, files), nil
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

// pick keeps at most keep photos scoring at least min, best first, never
// two near-duplicates: of a burst of the same moment only the best counts.
func pick(ps []photo, keep int, min float64) []verdict {
	v := make([]verdict, len(ps))
	order := make([]int, 0, len(ps))
	for i, p := range ps {
		if p.Err != "" {
			v[i].reason = "invalid"
			continue
		}
		order = append(order, i)
	}
	sort.SliceStable(order, func(a, b int) bool { return ps[order[a]].Score > ps[order[b]].Score })
	var picked []int
	for _, i := range order {
		switch {
		case ps[i].Score < min:
			v[i].reason = fmt.Sprintf("below %.2f", min)
		case dupOf(ps, picked, i) >= 0:
			v[i].reason = "near-duplicate of " + filepath.Base(ps[dupOf(ps, picked, i)].File)
		case len(picked) >= keep:
			v[i].reason = fmt.Sprintf("not in the best %d", keep)
		default:
			picked = append(picked, i)
			v[i].rank = len(picked)
		}
	}
	return v
}

// dupOf returns the picked photo that photo i nearly duplicates, or -1.
func dupOf(ps []photo, picked []int, i int) int {
	for _, j := range picked {
		if bits.OnesCount64(ps[i].Result.PHash^ps[j].Result.PHash) <= NearDuplicateBits {
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
