package policy

import (
	"encoding/binary"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/store"
)

// Kind is a kind of artifact that may leave the device (contract section 4).
type Kind string

// The kinds of artifact.
const (
	KindPhoto        Kind = "photo"
	KindSighting     Kind = "sighting"
	KindFaceTemplate Kind = "face_template"
	KindInventory    Kind = "inventory"
	KindUsage        Kind = "usage"
)

// Kinds lists every kind.
var Kinds = []Kind{KindPhoto, KindSighting, KindFaceTemplate, KindInventory, KindUsage}

// Verdict is the answer to "may this be sent now?".
type Verdict int

// The answers.
const (
	Send   Verdict = iota // publish it
	Hold                  // not now: a policy change awaits the owner's acceptance
	Refuse                // never: its consent is gone; drop it
)

func (v Verdict) String() string {
	switch v {
	case Send:
		return "send"
	case Hold:
		return "hold"
	}
	return "refuse"
}

// Outgoing describes an artifact about to leave the device.
type Outgoing struct {
	Kind    Kind
	Subject string // the person a sighting or face_template is about
	// Photos only: Masked is set when strangers were pixelated as it was
	// prepared; ShowsKnown when a recognised person's face was left as it
	// is, at recognition generation Generation.
	Masked     bool
	ShowsKnown bool
	Generation uint64
}

// MaySend answers, in tx, whether o may be published now. Nothing leaves
// unless a consent covers it at this moment:
//
//   - photo: auto_photo allowed; while blur_unknown_faces is on, only a
//     masked photo, and one that shows a recognised person only if
//     recognition is still allowed and nobody stopped being recognisable
//     since it was masked (RecognitionGen);
//   - sighting: patrol allowed and the person's face_recognition scope;
//   - face_template: the cloud_backup feature allowed, the region not
//     prohibited, and the person's face_recognition and cloud_backup
//     scopes;
//   - usage: usage_analytics allowed;
//   - inventory: always (counts and ids the owner asked for, never
//     content).
//
// While a policy change awaits acceptance, what the accepted policy
// allowed is held, not refused.
func (p *Policy) MaySend(tx *bolt.Tx, o Outgoing) Verdict {
	st, err := p.Read(tx)
	if err != nil {
		return Hold // the store is unreadable now: keep it and ask again
	}
	if p.allowsSend(tx, st, o) {
		return Send
	}
	if st.PausedForPolicy != "" && o.Kind != KindInventory {
		unpaused := clone(st)
		unpaused.PausedForPolicy = ""
		if p.allowsSend(tx, unpaused, o) {
			return Hold
		}
	}
	return Refuse
}

func (p *Policy) allowsSend(tx *bolt.Tx, st State, o Outgoing) bool {
	switch o.Kind {
	case KindPhoto:
		if !p.Allows(st, AutoPhoto) {
			return false
		}
		if !st.On(BlurUnknownFaces) {
			return true
		}
		if !o.Masked {
			return false
		}
		return !o.ShowsKnown || (p.Allows(st, Patrol) && o.Generation == RecognitionGen(tx))
	case KindSighting:
		return p.Allows(st, Patrol) && p.hasScope(tx, o.Subject, ScopeFaceRecognition)
	case KindFaceTemplate:
		return p.Allows(st, CloudBackup) && !p.Prohibited(st.Region) &&
			p.hasScope(tx, o.Subject, ScopeCloudBackup) && p.hasScope(tx, o.Subject, ScopeFaceRecognition)
	case KindUsage:
		return p.Allows(st, UsageAnalytics)
	case KindInventory:
		return true
	}
	return false
}

func (p *Policy) hasScope(tx *bolt.Tx, subject string, s Scope) bool {
	if subject == "" {
		return false
	}
	c, ok, err := p.Consent(tx, subject)
	return err == nil && ok && c.Has(s)
}

var keyRecognitionGen = []byte("recognition_gen")

// RecognitionGen counts the changes after which someone recognised before
// may no longer be: a face_recognition scope withdrawn, face data erased,
// patrol switched off, a move to a prohibited region. What was decided
// about faces at an older generation (a photo left unblurred, a matcher)
// is stale.
func RecognitionGen(tx *bolt.Tx) uint64 {
	raw := tx.Bucket(store.BucketPolicy).Get(keyRecognitionGen)
	if len(raw) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(raw)
}

// BumpRecognitionTx moves RecognitionGen on, in the transaction of the
// change that made it stale.
func BumpRecognitionTx(tx *bolt.Tx) error {
	return tx.Bucket(store.BucketPolicy).Put(keyRecognitionGen, store.Uint64Key(RecognitionGen(tx)+1))
}
