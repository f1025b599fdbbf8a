// Command sign-command makes an ed25519 key pair for security.command_keys
// and signs commands with it, for trying signed mode by hand:
//
//	go run ./scripts/sign-command -genkey -out owner.key     # prints the public key for the config
//	go run ./scripts/sign-command -key owner.key -kid k1 \
//	    '{"id":"c1","type":"accept_policy","payload":{"version":"2026-11"}}' |
//	  mosquitto_pub -p 18830 -t aibo/aibo-dev/cmd -s
//
// issued_at is set to now when the command lacks one. Test keys only: a
// production signing key never sits in a file on a laptop.
package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/agent/command"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "sign-command:", err)
		os.Exit(1)
	}
}

func run() error {
	genkey := flag.Bool("genkey", false, "make a key pair")
	out := flag.String("out", "command.key", "with -genkey: where to write the private key (base64, mode 0600)")
	keyFile := flag.String("key", "", "private key file made by -genkey")
	kid := flag.String("kid", "k1", "key id as named in security.command_keys")
	flag.Parse()
	if *genkey {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		if err := os.WriteFile(*out, []byte(base64.StdEncoding.EncodeToString(priv)+"\n"), 0o600); err != nil {
			return err
		}
		fmt.Printf("security:\n  command_keys:\n    %s: %s\n", *kid, base64.StdEncoding.EncodeToString(pub))
		return nil
	}
	if *keyFile == "" || flag.NArg() != 1 {
		return errors.New("usage: sign-command -key FILE [-kid K] 'COMMAND JSON'  |  sign-command -genkey [-out FILE]")
	}
	raw, err := os.ReadFile(*keyFile)
	if err != nil {
		return err
	}
	priv, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(priv) != ed25519.PrivateKeySize {
		return errors.New("key file does not hold a base64 ed25519 private key")
	}
	var cmd map[string]any
	if err := json.Unmarshal([]byte(flag.Arg(0)), &cmd); err != nil {
		return fmt.Errorf("command is not a JSON object: %w", err)
	}
	if _, ok := cmd["issued_at"]; !ok {
		cmd["issued_at"] = time.Now().UTC().Format(time.RFC3339)
	}
	body, _ := json.Marshal(cmd)
	fmt.Println(string(command.Sign(*kid, ed25519.PrivateKey(priv), body)))
	return nil
}
