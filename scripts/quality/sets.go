package main

import (
	"bufio"
	"fmt"
	"image"
	_ "image/jpeg"
	_ "image/png"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/capture/score/smile"
	"github.com/aibo-privacy/aibo-privacyd/capture/score/synth"
)

// Frame size of the robot's photos.
const frameW, frameH = 1280, 720

// scenes are the backgrounds; none shows a person.
var scenes = []string{"coffee.png", "chelsea.png", "rocket.jpg"}

// face is a face image and how tall it should stand in the frame.
type face struct {
	name   string
	img    image.Image
	height int // pixels in the 1280x720 frame
	aspect float64
	// feather: the fraction of the face's size blended into the scene at
	// its border. Tight crops (GENKI) keep their jaw line with a thin one.
	feather float64
}

type variant struct {
	name    string
	jpeg    []byte
	takenAt time.Time
}

type set struct {
	name     string
	variants []variant // variants[0] is the clean photo
}

func loadImage(path string) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if filepath.Ext(path) == ".pgm" {
		return readPGM(f)
	}
	img, _, err := image.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return img, nil
}

// readPGM reads a binary (P5) 8-bit PGM, the format of the ORL faces.
func readPGM(r io.Reader) (image.Image, error) {
	br := bufio.NewReader(r)
	var fields []int
	magic := ""
	for len(fields) < 3 {
		var tok string
		if _, err := fmt.Fscan(br, &tok); err != nil {
			return nil, fmt.Errorf("pgm header: %w", err)
		}
		if tok[0] == '#' {
			br.ReadString('\n')
			continue
		}
		if magic == "" {
			magic = tok
			continue
		}
		n, err := strconv.Atoi(tok)
		if err != nil {
			return nil, fmt.Errorf("pgm header: %w", err)
		}
		fields = append(fields, n)
	}
	if magic != "P5" || fields[2] != 255 || fields[0] <= 0 || fields[1] <= 0 || fields[0]*fields[1] > 1<<24 {
		return nil, fmt.Errorf("pgm: unsupported %s %v", magic, fields)
	}
	br.ReadByte() // the single whitespace after maxval
	g := image.NewGray(image.Rect(0, 0, fields[0], fields[1]))
	if _, err := io.ReadFull(br, g.Pix); err != nil {
		return nil, fmt.Errorf("pgm pixels: %w", err)
	}
	return g, nil
}

func readGreyCrop(path string) (smile.Crop, error) {
	img, err := loadImage(path)
	if err != nil {
		return smile.Crop{}, err
	}
	return smile.CropFromImage(img), nil
}

func subImage(img image.Image, r image.Rectangle) image.Image {
	return synth.RGBA(img).SubImage(r)
}

// faces returns the faces pasted into the sets: the astronaut's head, four
// ORL people and five GENKI-4K crops (three smiling, two not).
func loadFaces(data string) ([]face, error) {
	var out []face
	astro, err := loadImage(filepath.Join(data, "scenes", "astronaut.png"))
	if err != nil {
		return nil, err
	}
	out = append(out, face{name: "astronaut", img: subImage(astro, image.Rect(140, 10, 310, 230)), height: 360, feather: 0.12})
	for i, p := range []string{"s3/1.pgm", "s7/2.pgm", "s15/5.pgm", "s22/1.pgm"} {
		img, err := loadImage(filepath.Join(data, "orl_faces", p))
		if err != nil {
			return nil, err
		}
		out = append(out, face{name: "orl-" + filepath.Dir(p), img: img, height: 300 + 20*i, feather: 0.12})
	}
	for i, p := range []string{"test_folder/1/file1584.jpg", "test_folder/1/file1604.jpg", "test_folder/1/file1610.jpg", "test_folder/0/file3422.jpg", "test_folder/0/file3453.jpg"} {
		img, err := loadImage(filepath.Join(data, "genki4k", p))
		if err != nil {
			return nil, err
		}
		out = append(out, face{name: "genki-" + filepath.Base(p[:len(p)-4]), img: img, height: 220 + 15*i, feather: 0.05})
	}
	for i := range out {
		b := out[i].img.Bounds()
		out[i].aspect = float64(b.Dx()) / float64(b.Dy())
	}
	return out, nil
}

// buildSets makes one set per (face, scene): the clean photo, its copies
// and the scene alone.
func buildSets(data string) ([]set, error) {
	faces, err := loadFaces(data)
	if err != nil {
		return nil, err
	}
	var sets []set
	for si, sc := range scenes {
		bgImg, err := loadImage(filepath.Join(data, "scenes", sc))
		if err != nil {
			return nil, err
		}
		bg := synth.Fill(bgImg, frameW, frameH)
		for fi, f := range faces {
			k := si*len(faces) + fi
			h := f.height
			if si == len(scenes)-1 {
				// The last scene shows everyone small, as across a room:
				// faces of 6 to 10% of the frame's height.
				h = h * 2 / 7
			}
			w := int(float64(h) * f.aspect)
			// Walk the face across the frame: left third, centre, right
			// third, and up and down a little.
			cx := []int{frameW * 2 / 5, frameW / 2, frameW * 3 / 5, frameW / 3, frameW * 2 / 3}[k%5]
			cy := []int{frameH / 2, frameH * 9 / 20, frameH * 11 / 20}[k%3]
			rect := image.Rect(cx-w/2, cy-h/2, cx-w/2+w, cy-h/2+h)
			clean := synth.RGBA(bg)
			synth.Paste(clean, f.img, rect, f.feather)
			// Cut: the same face with 45% of it past the left or right edge.
			cut := synth.RGBA(bg)
			shift := rect.Min.X + int(0.45*float64(w))
			if k%2 == 1 {
				shift = rect.Max.X - frameW - int(0.45*float64(w))
			}
			synth.Paste(cut, f.img, rect.Sub(image.Pt(shift, 0)), f.feather)
			at := time.Date(2026, 5, 1, 10+k%8, 0, 0, 0, time.UTC)
			enc := func(img image.Image) []byte { return synth.JPEG(img, 92) }
			sets = append(sets, set{
				name: fmt.Sprintf("%s+%s", f.name, sc[:len(sc)-4]),
				variants: []variant{
					{"clean", enc(clean), at},
					{"blurred", enc(synth.Blur(clean, 2.5)), at},
					{"dark", enc(synth.Exposure(clean, 0.12)), at},
					{"overexposed", enc(synth.Exposure(clean, 4)), at},
					{"noisy", enc(synth.Noise(clean, 18, int64(k))), at},
					{"cut", enc(cut), at},
					{"no-people", enc(bg), at},
				},
			})
		}
	}
	return sets, nil
}
