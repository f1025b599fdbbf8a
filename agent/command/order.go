package command

import (
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/store"
)

// The newest signed command per setting wins (contract section 5, v3).
// A setting is what one owner's choice is about: a feature
// ("feature/auto_photo"), a person's consent ("consent/<subject_id>"),
// a person's enrollment window ("enrollment/<subject_id>"), the region
// ("region"), the accepted policy version ("policy_version"). For each,
// BucketCommands keeps the issued_at of the last signed command applied to
// it under settingPrefix; a family floor ("consent/*") stands for every
// setting of the family. A signed command older than what is kept for a
// setting it names is refused superseded and changes nothing, so a
// withdrawal the network held back cannot undo the owner's later grant,
// and a grant replayed late cannot undo a later withdrawal. Unsigned
// commands (no command keys configured) carry no trusted time and are
// neither ordered nor recorded.
//
// The keys hold setting names (feature names, opaque subject ids) and
// times, never a payload.

var settingPrefix = "setting/"

func settingKey(name string) []byte { return []byte(settingPrefix + name) }

// family is the floor that stands for every setting of name's family
// ("consent/*" for "consent/ana"), or "" for a setting of its own.
func family(name string) string {
	if i := strings.IndexByte(name, '/'); i >= 0 && name[i+1:] != "*" {
		return name[:i] + "/*"
	}
	return ""
}

func readSetting(tx *bolt.Tx, name string) time.Time {
	raw := tx.Bucket(store.BucketCommands).Get(settingKey(name))
	if raw == nil {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, string(raw))
	if err != nil {
		return time.Time{}
	}
	return t
}

func writeSetting(tx *bolt.Tx, name string, at time.Time) error {
	return tx.Bucket(store.BucketCommands).Put(settingKey(name), []byte(at.UTC().Format(time.RFC3339Nano)))
}

// Latest is the issued_at of the last signed command applied to setting
// (or to its family's floor, whichever is newer); zero when none was.
func (e *Exec) Latest(setting string) time.Time {
	t := readSetting(e.Tx, setting)
	if f := family(setting); f != "" {
		if ft := readSetting(e.Tx, f); ft.After(t) {
			t = ft
		}
	}
	return t
}

// Claim orders a signed command against the settings it changes: when a
// newer signed command was applied to any of them, it returns a
// superseded *Error and records nothing (the handler returns it, so the
// whole command rolls back: a command naming several settings is applied
// or refused whole). Otherwise it records this command's issued_at for
// each. Commands that are not signed are not ordered.
func (e *Exec) Claim(settings ...string) error {
	if !e.Cmd.Signed || e.Cmd.IssuedAt.IsZero() {
		return nil
	}
	at := e.Cmd.IssuedAt
	for _, s := range settings {
		if last := e.Latest(s); at.Before(last) {
			return Errorf(CodeSuperseded, "a newer signed command for %s was applied (issued %s)", s, last.UTC().Format(time.RFC3339))
		}
	}
	for _, s := range settings {
		if err := writeSetting(e.Tx, s, at); err != nil {
			return fmt.Errorf("record the order of %s: %w", s, err)
		}
	}
	return nil
}

// RaiseFloor records a signed command that spoke for every setting of a
// family ("consent/*": delete_data all forgot everyone): an older command
// for any of them is superseded from now on. The settings of the family
// the floor covers are dropped, so the table does not grow with every
// person ever known. Commands that are not signed raise nothing.
func (e *Exec) RaiseFloor(familyName string) error {
	if !e.Cmd.Signed || e.Cmd.IssuedAt.IsZero() || !strings.HasSuffix(familyName, "/*") {
		return nil
	}
	at := e.Cmd.IssuedAt
	if !at.After(readSetting(e.Tx, familyName)) {
		return nil
	}
	prefix := settingKey(strings.TrimSuffix(familyName, "*"))
	b := e.Tx.Bucket(store.BucketCommands)
	var covered [][]byte
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && strings.HasPrefix(string(k), string(prefix)); k, v = c.Next() {
		if t, err := time.Parse(time.RFC3339Nano, string(v)); err == nil && !t.After(at) {
			covered = append(covered, append([]byte(nil), k...))
		}
	}
	for _, k := range covered {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return writeSetting(e.Tx, familyName, at)
}

// Cutoff is the time before which a withdrawal that names no single
// setting (delete_data) acts: its issued_at when it is signed; zero
// (everything) otherwise. Records are dated by the device's clock, so a
// clock ahead spares what it dated after issued_at.
func (e *Exec) Cutoff() time.Time {
	if !e.Cmd.Signed {
		return time.Time{}
	}
	return e.Cmd.IssuedAt
}
