package main

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// payloadWithSums signs m with chunk_sha256 added (contract v2, section 8).
func (u updater) payloadWithSums(m offer, img []byte) map[string]any {
	var sums []string
	for off := 0; off < len(img); off += fwChunk {
		s := sha256.Sum256(img[off:min(off+fwChunk, len(img))])
		sums = append(sums, hex.EncodeToString(s[:]))
	}
	raw, _ := json.Marshal(struct {
		offer
		ChunkSHA256 []string `json:"chunk_sha256"`
	}{m, sums})
	return map[string]any{"kid": u.kid, "manifest": base64.StdEncoding.EncodeToString(raw),
		"sig": base64.StdEncoding.EncodeToString(ed25519.Sign(u.priv, raw))}
}

// TestFirmwareNeedResumesWithOnlyTheMissingChunks: a download half done
// when the daemon is killed asks, on the next connect, for exactly the
// chunks it lacks (a bad copy among them: chunk_sha256 dropped it), and
// the cloud sends only those. The version's pre-release holds "/". The
// staged image has its signed offer beside it for the platform's updater.
func TestFirmwareNeedResumesWithOnlyTheMissingChunks(t *testing.T) {
	const version = "2.1.0-rc/1"
	b := testbroker.Start(t)
	u := newUpdater()
	r := newRig(t, b, u.yaml())
	a := newApp(t, b, r.deviceID)
	r.start()
	img := randomImage(9*fwChunk + 11) // 10 chunks
	a.must("fw-1", "firmware_offer", u.payloadWithSums(u.manifest(version, img, "2026-11", false), img))
	chunk := func(n int) []byte { return img[n*fwChunk : min((n+1)*fwChunk, len(img))] }
	topic := func(n int) string { return a.topic("firmware/" + version + "/chunk/" + strconv.Itoa(n)) }
	bad := append([]byte{}, chunk(4)...)
	bad[0] ^= 0xff
	a.c.Publish(t, topic(4), bad, false) // dropped, asked for again
	for _, n := range []int{0, 2, 6, 8} {
		a.c.Publish(t, topic(n), chunk(n), false)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		upd, _ := r.status()["firmware_update"].(map[string]any)
		dl, _ := upd["download"].(map[string]any)
		if dl != nil && num(map[string]any{"x": dl["received"]}, "x") == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("download progress: %v", upd)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.kill()
	r.start()
	need := []int{1, 3, 4, 5, 7, 9}
	needAfterCut(t, a, version, need)
	for _, n := range need {
		a.c.Publish(t, topic(n), chunk(n), false)
	}
	firmwareEvent(t, a, "firmware_staged", version)
	got, err := os.ReadFile(filepath.Join(r.dataDir, "firmware", "staged.img"))
	if err != nil || string(got) != string(img) {
		t.Fatalf("staged image differs (%v)", err)
	}
	raw, err := os.ReadFile(filepath.Join(r.dataDir, "firmware", "staged.offer.json"))
	if err != nil {
		t.Fatal(err)
	}
	var o struct{ KID, Manifest, Sig string }
	json.Unmarshal(raw, &o)
	man, _ := base64.StdEncoding.DecodeString(o.Manifest)
	sig, _ := base64.StdEncoding.DecodeString(o.Sig)
	if o.KID != u.kid || !ed25519.Verify(u.pub, man, sig) {
		t.Fatalf("staged.offer.json does not verify: %s", raw)
	}
	r.stop()
}
