package firmware

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"testing"
)

// TestP16_SignedManifestIsReadStrictly: a signed manifest is read exactly
// as its signer wrote it. With encoding/json, {"version":"1.1.0",
// "version":"9.0.0"} is 9.0.0 to the device, and "Size" is size; a signer
// checking the first occurrence or exact names would approve another
// image than the device stages.
func TestP16_SignedManifestIsReadStrictly(t *testing.T) {
	f := newFixture(t, nil)
	good := manifestFor("1.1.0", image(2048, 6), 1024)
	sign := func(manifest string) []byte {
		return []byte(fmt.Sprintf(`{"kid":%q,"manifest":%q,"sig":%q}`, kid,
			base64.StdEncoding.EncodeToString([]byte(manifest)),
			base64.StdEncoding.EncodeToString(ed25519.Sign(f.priv, []byte(manifest)))))
	}
	body := fmt.Sprintf(`"size":%d,"sha256":%q,"chunks":%d`, good.Size, good.SHA256, good.Chunks)
	cases := map[string][]byte{
		"version twice":         sign(`{"version":"1.1.0","version":"9.0.0",` + body + `}`),
		"sha256 twice":          sign(`{"version":"1.1.0",` + body + `,"sha256":"` + good.SHA256 + `"}`),
		"case-folded Version":   sign(`{"Version":"1.1.0",` + body + `}`),
		"offer member twice":    []byte(`{"kid":"x","kid":` + string(sign(`{"version":"1.1.0",` + body + `}`))[len(`{"kid":`):]),
		"case-folded Manifest":  []byte(`{"kid":"` + kid + `","Manifest":"e30=","sig":"AAAA"}`),
		"invalid UTF-8 in JSON": sign("{\"version\":\"1.1.0\",\"policy_version\":\"\xff\"," + body + `}`),
	}
	for name, p := range cases {
		_, err := f.offerPayload(p)
		var r *Rejection
		if !errors.Is(err, ErrBadOffer) || errors.As(err, &r) {
			t.Errorf("%s: got %v, want ErrBadOffer", name, err)
		}
	}
	if d := f.status().Download; d != nil {
		t.Fatalf("download recorded: %+v", d)
	}
	// The same manifest without the duplicate is accepted.
	if _, err := f.offerPayload(sign(`{"version":"1.1.0",` + body + `}`)); err != nil {
		t.Fatalf("clean manifest refused: %v", err)
	}
}
