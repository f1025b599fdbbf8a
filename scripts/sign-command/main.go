// Command sign-command makes an ed25519 key pair for security.command_keys
// and signs commands with it, for trying signed mode by hand:
//
//	go run ./scripts/sign-command -genkey -key owner.key     # prints the public key for the config
//	go run ./scripts/sign-command -key owner.key -kid k1 -config configs/dev.yaml \
//	    '{"id":"c1","type":"accept_policy","payload":{"version":"2026-11"}}' |
//	  mosquitto_pub -p 18830 -t aibo/aibo-dev/cmd -s
//
// -genkey -key FILE is the same as scripts/sign-firmware's (-out FILE is
// still accepted), and never overwrites a key. A signed body must name the
// device it is for (contract section 5, v2): device_id comes from -device,
// or from the daemon's -config, and is added to the command unless it
// already names the same device. issued_at is set to now when the command
// lacks one. Test keys only: a production signing key never sits in a file
// on a laptop.
package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/config"
	"github.com/aibo-privacy/aibo-privacyd/internal/envelope"
	"github.com/aibo-privacy/aibo-privacyd/internal/keyfile"
	"github.com/aibo-privacy/aibo-privacyd/internal/strictjson"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, time.Now); err != nil {
		fmt.Fprintln(os.Stderr, "sign-command:", err)
		os.Exit(1)
	}
}

const usage = "usage: sign-command -key FILE [-kid K] (-device ID | -config PATH) 'COMMAND JSON'  |  sign-command -genkey -key FILE [-kid K]"

func run(args []string, stdout io.Writer, now func() time.Time) error {
	fs := flag.NewFlagSet("sign-command", flag.ContinueOnError)
	genkey := fs.Bool("genkey", false, "make a key pair: private key to -key, public key printed for security.command_keys")
	keyFile := fs.String("key", "", "private key file (standard base64 of the ed25519 private key)")
	out := fs.String("out", "", "with -genkey: the same as -key (older spelling)")
	kid := fs.String("kid", "k1", "key id as named in security.command_keys")
	device := fs.String("device", "", "device_id the command is for")
	cfgPath := fs.String("config", "", "the daemon's config file, to read device_id from")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *genkey {
		path := *keyFile
		if path == "" {
			path = *out
		}
		if path == "" {
			return errors.New("-genkey needs -key FILE")
		}
		return genKey(path, *kid, stdout)
	}
	if *keyFile == "" || fs.NArg() != 1 {
		return errors.New(usage)
	}
	deviceID, err := deviceFor(*device, *cfgPath)
	if err != nil {
		return err
	}
	priv, err := readKey(*keyFile)
	if err != nil {
		return err
	}
	body, err := prepare([]byte(fs.Arg(0)), deviceID, now())
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, string(envelope.Sign(*kid, priv, body)))
	return err
}

func deviceFor(device, cfgPath string) (string, error) {
	switch {
	case device != "" && cfgPath != "":
		return "", errors.New("give -device or -config, not both")
	case device != "":
		return device, nil
	case cfgPath != "":
		c, err := config.Load(cfgPath)
		if err != nil {
			return "", err
		}
		return c.DeviceID, nil
	}
	return "", errors.New("a signed command must name its device: give -device ID or -config PATH")
}

// prepare adds device_id and issued_at to the command JSON. The command
// must be one JSON object with no member given twice (the daemon refuses
// those), and any device_id it has must be deviceID.
func prepare(raw []byte, deviceID string, now time.Time) ([]byte, error) {
	var strict map[string]json.RawMessage
	if err := strictjson.Unmarshal(raw, &strict); err != nil || strict == nil {
		return nil, fmt.Errorf("command is not one JSON object the daemon would read: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // numbers go out as they came in
	var cmd map[string]any
	if err := dec.Decode(&cmd); err != nil {
		return nil, err
	}
	if d, ok := cmd["device_id"]; ok && d != deviceID {
		return nil, fmt.Errorf("command names device_id %v, signing for %s", d, deviceID)
	}
	cmd["device_id"] = deviceID
	if _, ok := cmd["issued_at"]; !ok {
		cmd["issued_at"] = now.UTC().Format(time.RFC3339)
	}
	return json.Marshal(cmd)
}

func genKey(path, kid string, stdout io.Writer) error {
	pub, err := keyfile.Generate(path)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "security:\n  command_keys:\n    %s: %s\n", kid, base64.StdEncoding.EncodeToString(pub))
	return err
}

func readKey(path string) (ed25519.PrivateKey, error) { return keyfile.Read(path) }
