package config

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/big"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"filippo.io/edwards25519"
)

// minimal is the least a configuration must say: the cloud's broker.
const minimal = "mqtt:\n  broker: tcp://127.0.0.1:1883\n"

func TestDefaultsMatchTheContract(t *testing.T) {
	c, err := Parse([]byte("device_id: aibo-0001\n" + minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.Photos.DailyCap != 30 || c.Photos.KeepPerDay != 10 || c.Photos.MinScore != 0.25 || c.Photos.SelectAt != "21:00" {
		t.Errorf("photo defaults %+v", c.Photos)
	}
	if c.MQTT.ChunkSize != 65536 || c.MQTT.AckTimeout.D() != 30*time.Second || c.MQTT.MaxQueueBytes != 160<<20 {
		t.Errorf("mqtt defaults %+v", c.MQTT)
	}
	if c.Faces.EnrollmentSamples != 5 || c.Faces.SightingInterval.D() != 10*time.Minute {
		t.Errorf("face defaults %+v", c.Faces)
	}
	if len(c.Policy.ProhibitedRegions) != 1 || c.Policy.ProhibitedRegions[0] != "US-IL" {
		t.Errorf("prohibited regions %v", c.Policy.ProhibitedRegions)
	}
}

func TestBadConfigsAreRefusedWithAReason(t *testing.T) {
	// Each case names the reason it must be refused for (every file has a
	// broker, so none is refused only for lacking one).
	cases := map[string]struct{ yaml, reason string }{
		"unknown key":       {"device_id: a\ncolour: red\n", "colour: unknown key"},
		"nested unknown":    {"photos:\n  daily_cap: 10\n  dialy_cap: 10\n", "photos.dialy_cap: unknown key"},
		"cap above 30":      {"photos:\n  daily_cap: 31\n", "photos.daily_cap 31 must be within 1..30"},
		"cap zero":          {"photos:\n  daily_cap: 0\n", "photos.daily_cap 0 must be within 1..30"},
		"keep above cap":    {"photos:\n  daily_cap: 5\n  keep_per_day: 6\n", "photos.keep_per_day 6"},
		"bad timezone":      {"timezone: Mars/Olympus\n", "timezone \"Mars/Olympus\""},
		"local timezone":    {"timezone: Local\n", "timezone \"Local\""},
		"bad region":        {"region: Illinois\n", "region \"Illinois\""},
		"bad device id":     {"device_id: \"aibo/0001\"\n", "device_id \"aibo/0001\""},
		"bad broker":        {"mqtt:\n  broker: http://x\n", "mqtt.broker \"http://x\" must start with"},
		"ssl without ca":    {"mqtt:\n  broker: ssl://h:8883\n", "mqtt.tls.ca_file is required"},
		"chunk too small":   {"mqtt:\n  broker: tcp://h:1\n  chunk_size: 10\n", "mqtt.chunk_size 10"},
		"bad duration":      {"mqtt:\n  broker: tcp://h:1\n  ack_timeout: soon\n", "mqtt.ack_timeout: \"soon\" is not a duration"},
		"bad select_at":     {"photos:\n  select_at: \"25:00\"\n", "photos.select_at \"25:00\""},
		"min_score above 1": {"photos:\n  min_score: 1.5\n", "photos.min_score 1.5"},
		"bad semver":        {"firmware:\n  version: one\n", "firmware.version"},
		"bad command key":   {"security:\n  command_keys: {k1: \"AAAA\"}\n", "security.command_keys"},
		"bad firmware key":  {"firmware:\n  keys: {k1: \"%%%\"}\n", "firmware.keys"},
		"not yaml":          {"{{{", "config: yaml: line"},
	}
	for name, c := range cases {
		y := c.yaml
		if !strings.Contains(y, "mqtt:") {
			y = minimal + y
		}
		_, err := Parse([]byte(y))
		switch {
		case err == nil:
			t.Errorf("%s: accepted", name)
		case !strings.Contains(err.Error(), c.reason):
			t.Errorf("%s: refused as %q, want %q", name, err, c.reason)
		case strings.Contains(err.Error(), "\n"):
			t.Errorf("%s: reason spans lines: %q", name, err)
		}
	}
}

// TestABrokerMustBeNamed: a configuration without mqtt.broker used to
// mean tcp://127.0.0.1:1883 in silence; a robot so configured talks to
// no cloud and nobody is told why.
func TestABrokerMustBeNamed(t *testing.T) {
	for _, y := range []string{"", "device_id: a\n", "mqtt:\n  chunk_size: 4096\n", "mqtt:\n  broker: \"\"\n"} {
		_, err := Parse([]byte(y))
		if err == nil || !strings.Contains(err.Error(), "mqtt.broker must be set") {
			t.Errorf("%q: err %v, want mqtt.broker must be set", y, err)
		}
	}
	if _, err := Parse([]byte(minimal)); err != nil {
		t.Fatalf("a broker is all a file must say: %v", err)
	}
}

// TestErrorsNameTheKeyAsWritten: an operator reads photos.daily_cpa, the
// key in the file, never a Go type such as config.Photos.
func TestErrorsNameTheKeyAsWritten(t *testing.T) {
	for y, want := range map[string]string{
		"photos:\n  daily_cpa: 3\n":                         "config: photos.daily_cpa: unknown key (line 2)",
		"colour: red\n":                                     "config: colour: unknown key (line 1)",
		"photos:\n  daily_cap: abc\n":                       `config: photos.daily_cap: must be an integer, not a string ("abc") (line 2)`,
		"mqtt:\n  broker: tcp://h:1\n  ack_timeout: soon\n": `config: mqtt.ack_timeout: "soon" is not a duration (such as 30s, 10m, 720h) (line 3)`,
		"policy:\n  prohibited_regions: US-IL\n":            "config: policy.prohibited_regions: must be a list, not a string",
		"policy:\n  prohibited_regions: [US-IL, [x]]\n":     "config: policy.prohibited_regions[1]: must be a string, not a list (line 2)",
		"photos: 3\n":                                       "config: photos: must be a section of keys, not an integer",
		"diag:\n  allowed_uids: [1, -2]\n":                  `config: diag.allowed_uids[1]: must be an integer of at least 0, not an integer ("-2") (line 2)`,
		"photos:\n  daily_cap: 5\n  daily_cap: 6\n":         "config: photos.daily_cap: given twice (first at line 2) (line 3)",
		"photos:\n  Daily_Cap: 5\n  dialy_cap: 1\n":         "config: photos.Daily_Cap: unknown key (line 2); photos.dialy_cap: unknown key (line 3)",
	} {
		_, err := Parse([]byte(y))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q:\n got  %v\n want %s", y, err, want)
		}
		if err != nil && (strings.Contains(err.Error(), "config.") || strings.Contains(err.Error(), "not found in type")) {
			t.Errorf("%q: a Go type in %q", y, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("device_id: aibo-0001\nphotos:\n  daily_cap: 30\n" + minimal))
	f.Add([]byte("mqtt:\n  tls: {ca_file: a}\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := Parse(raw)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line reason %q", err)
			}
			return
		}
		if c.Photos.DailyCap < 1 || c.Photos.DailyCap > MaxDailyCap {
			t.Fatalf("accepted daily_cap %d", c.Photos.DailyCap)
		}
	})
}

func TestShippedConfigsParse(t *testing.T) {
	if _, err := Load("../configs/dev.yaml"); err != nil {
		t.Fatalf("dev.yaml: %v", err)
	}
	// The production example must not run with its placeholders: it loads
	// only once every placeholder is replaced by a real key.
	const prod = "../configs/production.example.yaml"
	_, err := Load(prod)
	if err == nil || !strings.Contains(err.Error(), "keys") {
		t.Fatalf("%s loads with its placeholder keys: %v", prod, err)
	}
	raw, err := os.ReadFile(prod)
	if err != nil {
		t.Fatal(err)
	}
	real := regexp.MustCompile(`REPLACE_WITH_[A-Z_]+`).ReplaceAllFunc(raw, func([]byte) []byte {
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		return []byte(base64.StdEncoding.EncodeToString(pub))
	})
	c, err := Parse(real)
	if err != nil {
		t.Fatalf("%s with real keys: %v", prod, err)
	}
	if len(c.Security.CommandKeys) < 2 || len(c.Firmware.Keys) < 1 {
		t.Errorf("production must require signed commands (with a second key for rotation) and name a firmware key")
	}
}

// TestConfigIsStrictYAML: a key given twice, a key in another case or a
// second document would let two readers of the file see different
// settings; each is refused.
func TestConfigIsStrictYAML(t *testing.T) {
	for name, y := range map[string]string{
		"key twice":            "device_id: a\ndevice_id: b\n",
		"nested key twice":     "photos:\n  daily_cap: 5\n  daily_cap: 6\n",
		"section twice":        "photos:\n  daily_cap: 5\nphotos:\n  keep_per_day: 1\n",
		"map key twice":        "security:\n  command_keys:\n    k1: " + testKey(t) + "\n    k1: " + testKey(t) + "\n",
		"key in another case":  "Device_ID: a\n",
		"nested in other case": "photos:\n  Daily_Cap: 5\n",
		"second document":      "device_id: a\n---\nphotos: {daily_cap: 99}\n",
	} {
		if _, err := Parse([]byte(y)); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: reason spans lines: %q", name, err)
		}
	}
}

func testKey(t *testing.T) string {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(pub)
}

// The eight points of small order (RFC 8032 keys anyone can sign for),
// canonical encodings, hex.
var smallOrder = []string{
	"0100000000000000000000000000000000000000000000000000000000000000", // identity
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // order 2
	"0000000000000000000000000000000000000000000000000000000000000000", // order 4 (all zero)
	"0000000000000000000000000000000000000000000000000000000000000080", // order 4
	"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", // order 8
	"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
	"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
	"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
}

// TestP16_KeysAnyoneCanSignForAreRefused: small-order, all-zero,
// non-canonical and torsioned keys are refused at load, in both key sets.
func TestP16_KeysAnyoneCanSignForAreRefused(t *testing.T) {
	// Why it matters: crypto/ed25519 accepts a forgery made with no
	// private key at all against the identity point.
	identity, _ := hex.DecodeString(smallOrder[0])
	forged := append(append([]byte{}, identity...), make([]byte, 32)...) // R = identity, S = 0
	if !ed25519.Verify(identity, []byte(`{"type":"delete_data"}`), forged) {
		t.Fatal("crypto/ed25519 refused the small-order forgery; this test no longer shows the risk")
	}

	type badKey struct {
		key    []byte
		reason string // what the refusal must say: each check has a case
	}
	bad := map[string]badKey{}
	for i, h := range smallOrder {
		b, _ := hex.DecodeString(h)
		reason := "small order"
		if i == 2 {
			reason = "all zero"
		}
		bad[fmt.Sprintf("small order #%d", i)] = badKey{b, reason}
	}
	// Non-canonical: y = p + k for small k (only those that decode).
	p := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	nonCanonical := 0
	for k := int64(0); k < 19; k++ {
		b := littleEndian(new(big.Int).Add(p, big.NewInt(k)))
		if _, err := new(edwards25519.Point).SetBytes(b); err == nil {
			bad[fmt.Sprintf("y = p+%d", k)] = badKey{b, "canonical"}
			nonCanonical++
		}
	}
	if nonCanonical == 0 {
		t.Fatal("no non-canonical encoding decodes: the case checks nothing")
	}
	// The identity with the sign bit set: x = 0 cannot be negative.
	negZero, _ := hex.DecodeString("0100000000000000000000000000000000000000000000000000000000000080")
	bad["x = 0 with the sign bit"] = badKey{negZero, "canonical"}
	// A real key plus a point of order 8: decodes, large order, no key pair.
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	A, _ := new(edwards25519.Point).SetBytes(pub)
	t8, _ := hex.DecodeString(smallOrder[4])
	T, _ := new(edwards25519.Point).SetBytes(t8)
	bad["key with a torsion part"] = badKey{new(edwards25519.Point).Add(A, T).Bytes(), "prime-order"}
	notOnCurve, _ := hex.DecodeString("0200000000000000000000000000000000000000000000000000000000000000")
	bad["not on the curve"] = badKey{notOnCurve, "not a point"}

	for name, c := range bad {
		for _, section := range []string{"security:\n  command_keys", "firmware:\n  keys"} {
			y := minimal + section + ":\n    k1: " + base64.StdEncoding.EncodeToString(c.key) + "\n"
			_, err := Parse([]byte(y))
			if err == nil {
				t.Errorf("%s in %s: accepted", name, strings.SplitN(section, ":", 2)[0])
			} else if !strings.Contains(err.Error(), c.reason) {
				t.Errorf("%s: refused as %q, want a reason naming %q", name, err, c.reason)
			} else if strings.Contains(err.Error(), "\n") {
				t.Errorf("%s: reason spans lines: %q", name, err)
			}
		}
	}
	// Real keys still load.
	y := minimal + "security:\n  command_keys:\n    k1: " + testKey(t) + "\nfirmware:\n  keys:\n    f1: " + testKey(t) + "\n"
	if _, err := Parse([]byte(y)); err != nil {
		t.Fatalf("real keys refused: %v", err)
	}
}

func littleEndian(n *big.Int) []byte {
	be := n.FillBytes(make([]byte, 32))
	out := make([]byte, 32)
	for i := range be {
		out[i] = be[31-i]
	}
	return out
}
