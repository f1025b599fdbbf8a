package facenet

import (
	"image"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/aibo-privacy/aibo-privacyd/capture/score/synth"
)

// TestP7_ASideLitFaceAcrossTheRoomIsMarkedAsOftenAsAnEvenlyLitOne (issue
// 19, point 2): the proposal net, which says where Patrol looks for faces
// of 5-20% of the height, ranks a face 3 m away (43 px) lit hard from one
// side (synth.SideLight) among the marks a frame confirms about as often
// as the same face under even light, at the same places: at most one in
// 16 fewer. Its shaded half is nearly black there; the net sees the frame
// lifted (headnet.Lift). Without the lift it was 11 fewer of 128 here
// (116 against 127), with it 5 (121 against 126).
func TestP7_ASideLitFaceAcrossTheRoomIsMarkedAsOftenAsAnEvenlyLitOne(t *testing.T) {
	n := loadNets(t)
	scene := testScene(t, "rocket.jpg")
	names, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "faces", "orl-*.pgm"))
	if len(names) < 12 {
		t.Fatalf("%d committed faces", len(names))
	}
	rnd := rand.New(rand.NewPCG(19, 2))
	marked := func(face image.Image, seed uint64) bool {
		r := rand.New(rand.NewPCG(19, seed))
		jpgs, at := synth.Place(scene, face, 43, r).Frames(1, r)
		m := decodeJPEG(t, jpgs[0])
		defer m.Close()
		props, err := n.Propose(m)
		if err != nil {
			t.Fatal(err)
		}
		best := props[:min(len(props), maxProposals)]
		return slices.ContainsFunc(best, func(p Proposal) bool { return Same(p.Box, at[0]) })
	}
	var even, side, trials int
	for _, name := range names {
		g := readPGM(t, name)
		for _, face := range []*image.Gray{g, mirror(g)} {
			for range 4 {
				seed := rnd.Uint64()
				trials++
				if marked(face, seed) {
					even++
				}
				if marked(synth.SideLight(face), seed) {
					side++
				}
			}
		}
	}
	t.Logf("faces 43 px high among the %d best marks: %d of %d under even light, %d under side light", maxProposals, even, trials, side)
	if side < even-trials/16 {
		t.Errorf("faces among the best marks: %d of %d under side light, %d under even light: want at most %d fewer", side, trials, even, trials/16)
	}
}
