package synth

import (
	"image"
	"image/color"
	"image/draw"
	"math"
	"math/rand/v2"
)

// Frame size of the robot's camera, for visits.
const frameW, frameH = 1280, 720

// FaceShare is how much of an ORL image's height its face takes, brows to
// chin: the tiny face detector's box on ORL images placed large is 0.80 of
// the image's height on average (s1..s40, image 1). A face of height h is
// an ORL image of height h/FaceShare.
const FaceShare = 0.8

// Placed is a person placed in a scene at a distance: where their face is
// and the ORL image (with some head around it) drawn there.
type Placed struct {
	Scene *image.RGBA
	Face  image.Image
	// At is the face's box in the frame (brows to chin, the share
	// FaceShare of the ORL image's height), its centre 0.66 down the image.
	At image.Rectangle
	// img is where the ORL image with its context goes.
	img image.Rectangle
}

// headContext is how far the ORL image's edges are carried outwards, as a
// fraction of its size on each side: some head and shoulders around it.
const headContext = 0.2

// Place puts face in scene (a 1280x720 frame) with its face faceH pixels high, at a position
// drawn from rnd.
func Place(scene *image.RGBA, face image.Image, faceH int, rnd *rand.Rand) Placed {
	iw, ih, cw, ch := sizes(face, faceH)
	x := rnd.IntN(frameW-cw-16) + 8
	y := rnd.IntN(frameH-ch-16) + 8
	ix, iy := float64(x)+iw*headContext, float64(y)+ih*headContext
	cx, cy := ix+iw/2, iy+0.66*ih
	at := image.Rect(int(cx-float64(faceH)/2), int(cy-float64(faceH)/2), int(cx+float64(faceH)/2), int(cy+float64(faceH)/2))
	return Placed{Scene: scene, Face: face, At: at, img: image.Rect(x, y, x+cw, y+ch)}
}

// PlaceAt puts face in scene with its face (brows to chin) on the box at,
// whose height is the face's.
func PlaceAt(scene *image.RGBA, face image.Image, at image.Rectangle) Placed {
	iw, ih, cw, ch := sizes(face, at.Dy())
	c := at.Min.Add(at.Max).Div(2)
	x := int(float64(c.X) - iw/2 - iw*headContext)
	y := int(float64(c.Y) - 0.66*ih - ih*headContext)
	return Placed{Scene: scene, Face: face, At: at, img: image.Rect(x, y, x+cw, y+ch)}
}

// sizes are the ORL image's size (iw x ih) for a face faceH high, and that
// of the image with its context (cw x ch).
func sizes(face image.Image, faceH int) (iw, ih float64, cw, ch int) {
	b := face.Bounds()
	ih = float64(faceH) / FaceShare
	iw = ih * float64(b.Dx()) / float64(b.Dy())
	return iw, ih, int(iw * (1 + 2*headContext)), int(ih * (1 + 2*headContext))
}

// Nobody is the scene alone, for frames without anyone.
func Nobody(scene *image.RGBA) Placed { return Placed{Scene: scene} }

// Frames renders a visit: n JPEG frames (quality 90) of the placed person
// standing still while the camera jitters by 1 to 2 px between frames.
// The face boxes of each frame are returned with it.
func (p Placed) Frames(n int, rnd *rand.Rand) ([][]byte, []image.Rectangle) {
	var out [][]byte
	var at []image.Rectangle
	dx, dy := 0, 0
	img := RGBA(p.Scene)
	if p.Face != nil {
		Paste(img, carry(p.Face, headContext), p.img, 0.15)
	}
	for i := 0; i < n; i++ {
		if i > 0 {
			for {
				jx, jy := rnd.IntN(5)-2, rnd.IntN(5)-2
				if d := max(abs(jx), abs(jy)); d >= 1 {
					dx, dy = min(max(dx+jx, -4), 4), min(max(dy+jy, -4), 4)
					break
				}
			}
		}
		// The camera moved by (dx, dy): the frame is the view shifted.
		shifted := image.NewRGBA(img.Bounds())
		draw.Draw(shifted, shifted.Bounds(), img, image.Pt(dx, dy), draw.Src)
		out = append(out, JPEG(shifted, 90))
		at = append(at, p.At.Sub(image.Pt(dx, dy)))
	}
	return out, at
}

func abs(v int) int { return max(v, -v) }

// carry returns face with its edge pixels carried outwards by frac of its
// size on each side.
func carry(face image.Image, frac float64) *image.RGBA {
	b := face.Bounds()
	mx, my := int(float64(b.Dx())*frac), int(float64(b.Dy())*frac)
	src := RGBA(face)
	out := image.NewRGBA(image.Rect(0, 0, b.Dx()+2*mx, b.Dy()+2*my))
	for y := 0; y < out.Rect.Dy(); y++ {
		for x := 0; x < out.Rect.Dx(); x++ {
			sx, sy := min(max(x-mx, 0), b.Dx()-1), min(max(y-my, 0), b.Dy()-1)
			copy(out.Pix[out.PixOffset(x, y):out.PixOffset(x, y)+4], src.Pix[src.PixOffset(sx, sy):src.PixOffset(sx, sy)+4])
		}
	}
	return out
}

// SideLight relights a grey face as a strong light from one side does: a
// gain rising linearly from 0.3 at the left edge to 1.3 at the right, then
// gamma 1.8 (v' = v^1.8 on 0..1, which darkens the shaded side further).
func SideLight(face image.Image) *image.Gray { return SideLightGamma(face, 1.8) }

// SideLightGamma is SideLight with another gamma.
func SideLightGamma(face image.Image, gamma float64) *image.Gray {
	b := face.Bounds()
	out := image.NewGray(image.Rect(0, 0, b.Dx(), b.Dy()))
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			g := 0.3 + float64(x)/float64(b.Dx()-1)
			v := float64(color.GrayModel.Convert(face.At(b.Min.X+x, b.Min.Y+y)).(color.Gray).Y) / 255
			v = math.Pow(math.Min(1, v*g), gamma)
			out.Pix[y*out.Stride+x] = uint8(math.Round(v * 255))
		}
	}
	return out
}
