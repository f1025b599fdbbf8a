// Command sign-firmware builds a signed firmware_offer for an image, so the
// update flow (contract section 8) can be tried by hand against `make run`.
//
// Make a key pair once; it prints the public key as firmware.keys wants it
// (add those lines to configs/dev.yaml and restart the daemon):
//
//	go run ./scripts/sign-firmware -genkey -key var/fw.key -kid dev
//
// Sign an image; the firmware_offer command JSON goes to stdout, and with
// -out the command, the chunks and a publish.sh of mosquitto_pub commands
// (offer first, then every chunk) are written to a directory:
//
//	go run ./scripts/sign-firmware -key var/fw.key -kid dev -version 1.2.3 \
//	    -policy-version 2026-12 [-material] -chunk 65536 -out var/fw-1.2.3 IMAGE
//	var/fw-1.2.3/publish.sh
//
// The manifest is always signed (firmware.keys) and carries chunk_sha256
// (one sha256 per chunk) unless -chunk-hashes=false, so the daemon drops a
// bad chunk and asks for it again instead of losing the download. A
// version whose pre-release holds "/" is fine (its chunk topics have more
// levels); one that cannot be an MQTT topic level is refused here, as the
// daemon would refuse it. The firmware_offer command itself is plain, as
// configs/dev.yaml (no security.command_keys) takes it; with -command-key
// it is a signed command too, as a robot with command keys requires (the
// README's signed flow):
//
//	go run ./scripts/sign-firmware -key fw.key -command-key owner.key -version 1.2.3 -out var/offer IMAGE
package main

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/envelope"
	"github.com/aibo-privacy/aibo-privacyd/internal/keyfile"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "sign-firmware:", err)
		os.Exit(1)
	}
}

func run() error {
	genkey := flag.Bool("genkey", false, "make a key pair: private key to -key, public key printed for firmware.keys")
	keyFile := flag.String("key", "", "private key file (standard base64 of the ed25519 private key or seed)")
	kid := flag.String("kid", "dev", "key id, as named in firmware.keys")
	version := flag.String("version", "", "firmware version (semver)")
	policyVersion := flag.String("policy-version", "", "privacy-policy version shipped with the image")
	material := flag.Bool("material", false, "the image brings a material policy change")
	chunk := flag.Int("chunk", 65536, "chunk size in bytes (1024..131072)")
	chunkHashes := flag.Bool("chunk-hashes", true, "put chunk_sha256 (one sha256 per chunk) in the manifest")
	device := flag.String("device", "aibo-dev", "device_id (topics live under aibo/{device_id}/)")
	host := flag.String("host", "127.0.0.1", "broker host for publish.sh")
	port := flag.Int("port", 18830, "broker port for publish.sh (make run uses 18830)")
	out := flag.String("out", "", "directory for offer.json, the chunks and publish.sh")
	commandKey := flag.String("command-key", "", "sign the firmware_offer command with this security.command_keys private key (sign-command's key file)")
	commandKid := flag.String("command-kid", "k1", "with -command-key: its key id in security.command_keys")
	flag.Parse()

	if *keyFile == "" {
		return errors.New("-key is required")
	}
	if *genkey {
		return genKey(*keyFile, *kid)
	}
	if flag.NArg() != 1 || *version == "" {
		return errors.New("usage: sign-firmware -key FILE -version V [-policy-version P] [-material] [-chunk N] [-command-key FILE [-command-kid K]] [-out DIR] IMAGE")
	}
	if *chunk < 1024 || *chunk > 131072 {
		return fmt.Errorf("-chunk %d must be within 1024..131072", *chunk)
	}
	if *material && *policyVersion == "" {
		return errors.New("-material needs -policy-version")
	}
	if err := checkVersion(*version); err != nil {
		return err
	}
	priv, err := readKey(*keyFile)
	if err != nil {
		return err
	}
	img, err := os.ReadFile(flag.Arg(0))
	if err != nil {
		return err
	}
	if len(img) == 0 {
		return errors.New("the image is empty")
	}
	cmd, err := offer(priv, *kid, *version, *policyVersion, *material, *chunk, *chunkHashes, img, time.Now())
	if err != nil {
		return err
	}
	if *commandKey != "" {
		ckey, err := readKey(*commandKey)
		if err != nil {
			return fmt.Errorf("-command-key: %w", err)
		}
		if cmd, err = signCommand(cmd, ckey, *commandKid, *device); err != nil {
			return err
		}
	}
	fmt.Println(string(cmd))
	if *out == "" {
		return nil
	}
	return writeOut(*out, cmd, img, *chunk, *version, *device, *host, *port)
}

// checkVersion refuses what the daemon would refuse as a chunk topic
// level: wildcards, control or non-ASCII characters, empty levels.
func checkVersion(v string) error {
	tv := topicVersion(v)
	if tv == "" || strings.HasPrefix(tv, "/") || strings.HasSuffix(tv, "/") || strings.Contains(tv, "//") ||
		strings.ContainsFunc(tv, func(r rune) bool { return r < 0x21 || r > 0x7e || r == '+' || r == '#' }) {
		return fmt.Errorf("version %q cannot be an MQTT topic level", v)
	}
	return nil
}

// offer is the firmware_offer command for img, its manifest signed by priv.
// With chunkHashes the manifest lists each chunk's sha256 (chunk_sha256).
func offer(priv ed25519.PrivateKey, kid, version, policyVersion string, material bool, chunk int, chunkHashes bool, img []byte, now time.Time) ([]byte, error) {
	sum := sha256.Sum256(img)
	fields := map[string]any{
		"version":                version,
		"size":                   len(img),
		"sha256":                 hex.EncodeToString(sum[:]),
		"chunks":                 (len(img) + chunk - 1) / chunk,
		"policy_version":         policyVersion,
		"material_policy_change": material,
	}
	if chunkHashes {
		var sums []string
		for off := 0; off < len(img); off += chunk {
			s := sha256.Sum256(img[off:min(off+chunk, len(img))])
			sums = append(sums, hex.EncodeToString(s[:]))
		}
		fields["chunk_sha256"] = sums
	}
	manifest, err := json.Marshal(fields)
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{
		"id":        fmt.Sprintf("fw-%s-%d", version, now.Unix()),
		"type":      "firmware_offer",
		"issued_at": now.UTC().Format(time.RFC3339),
		"payload": map[string]string{
			"kid":      kid,
			"manifest": base64.StdEncoding.EncodeToString(manifest),
			"sig":      base64.StdEncoding.EncodeToString(ed25519.Sign(priv, manifest)),
		},
	})
}

// signCommand wraps the offer command in the signed envelope of contract
// section 5, its body naming the device it is for (contract v2).
func signCommand(cmd []byte, key ed25519.PrivateKey, kid, device string) ([]byte, error) {
	var body map[string]any
	if err := json.Unmarshal(cmd, &body); err != nil {
		return nil, err
	}
	body["device_id"] = device
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	return envelope.Sign(kid, key, raw), nil
}

// writeOut writes offer.json, chunk-N.bin and publish.sh into dir.
func writeOut(dir string, cmd, img []byte, chunk int, version, device, host string, port int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "offer.json"), cmd, 0o644); err != nil {
		return err
	}
	pub := fmt.Sprintf("mosquitto_pub -h %s -p %d -q 1", host, port)
	topic := "aibo/" + device
	var sh strings.Builder
	sh.WriteString("#!/bin/sh\n# Publishes the offer, then every chunk.\nset -e\n")
	fmt.Fprintf(&sh, "%s -t %s -f %s\nsleep 1\n", pub, shellQuote(topic+"/cmd"), shellQuote(abs+"/offer.json"))
	for n, off := 0, 0; off < len(img); n, off = n+1, off+chunk {
		name := fmt.Sprintf("chunk-%d.bin", n)
		if err := os.WriteFile(filepath.Join(dir, name), img[off:min(off+chunk, len(img))], 0o644); err != nil {
			return err
		}
		fmt.Fprintf(&sh, "%s -t %s -f %s\n", pub, shellQuote(fmt.Sprintf("%s/firmware/%s/chunk/%d", topic, topicVersion(version), n)), shellQuote(abs+"/"+name))
	}
	if err := os.WriteFile(filepath.Join(dir, "publish.sh"), []byte(sh.String()), 0o755); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s: offer.json, %d chunks, publish.sh\n", dir, (len(img)+chunk-1)/chunk)
	return nil
}

// shellQuote quotes s for sh: a version or path is never shell syntax.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// topicVersion drops build metadata, which cannot appear in a topic name.
func topicVersion(v string) string {
	before, _, _ := strings.Cut(v, "+")
	return before
}

func genKey(path, kid string) error {
	pub, err := keyfile.Generate(path)
	if err != nil {
		return err
	}
	fmt.Printf("firmware:\n  keys:\n    %s: %s\n", kid, base64.StdEncoding.EncodeToString(pub))
	return nil
}

func readKey(path string) (ed25519.PrivateKey, error) { return keyfile.Read(path) }
