package config

import (
	"strings"
	"testing"
	"time"
)

func TestDefaultsMatchTheContract(t *testing.T) {
	c, err := Parse([]byte("device_id: aibo-0001\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Photos.DailyCap != 30 || c.Photos.KeepPerDay != 10 || c.Photos.MinScore != 0.25 || c.Photos.SelectAt != "21:00" {
		t.Errorf("photo defaults %+v", c.Photos)
	}
	if c.MQTT.ChunkSize != 65536 || c.MQTT.AckTimeout.D() != 30*time.Second || c.MQTT.MaxQueueBytes != 64<<20 {
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
	cases := map[string]string{
		"unknown key":       "device_id: a\ncolour: red\n",
		"nested unknown":    "photos:\n  daily_cap: 10\n  dialy_cap: 10\n",
		"cap above 30":      "photos:\n  daily_cap: 31\n",
		"cap zero":          "photos:\n  daily_cap: 0\n",
		"keep above cap":    "photos:\n  daily_cap: 5\n  keep_per_day: 6\n",
		"bad timezone":      "timezone: Mars/Olympus\n",
		"local timezone":    "timezone: Local\n",
		"bad region":        "region: Illinois\n",
		"bad device id":     "device_id: \"aibo/0001\"\n",
		"bad broker":        "mqtt:\n  broker: http://x\n",
		"ssl without ca":    "mqtt:\n  broker: ssl://h:8883\n",
		"chunk too small":   "mqtt:\n  chunk_size: 10\n",
		"bad duration":      "mqtt:\n  ack_timeout: soon\n",
		"bad select_at":     "photos:\n  select_at: \"25:00\"\n",
		"min_score above 1": "photos:\n  min_score: 1.5\n",
		"bad semver":        "firmware:\n  version: one\n",
		"bad command key":   "security:\n  command_keys: {k1: \"AAAA\"}\n",
		"bad firmware key":  "firmware:\n  keys: {k1: \"%%%\"}\n",
		"not yaml":          "{{{",
	}
	for name, y := range cases {
		_, err := Parse([]byte(y))
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: reason spans lines: %q", name, err)
		}
	}
}

func TestEmptyFileGivesDefaults(t *testing.T) {
	if _, err := Parse(nil); err != nil {
		t.Fatal(err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("device_id: aibo-0001\nphotos:\n  daily_cap: 30\n"))
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
	for _, f := range []string{"../../configs/dev.yaml", "../../configs/production.example.yaml"} {
		c, err := Load(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if strings.Contains(f, "production") && len(c.Security.CommandKeys) < 2 {
			t.Errorf("%s: production must require signed commands (with a second key for rotation)", f)
		}
	}
}
