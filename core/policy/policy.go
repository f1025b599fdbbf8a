// Package policy is the one place that answers "may this data be captured,
// kept or sent?". It owns the feature switches (all off by default), the
// privacy-policy version the owner accepted, the home's region and the list
// of regions where face features are prohibited. Every change is written with
// its audit record in the caller's transaction. It never deletes data itself:
// callers act on the changes it reports.
package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/audit"
	"github.com/aibo-privacy/aibo-privacyd/core/keys"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
)

// Feature names a switch the owner controls from the app.
type Feature string

// The features of contract section 5.
const (
	AutoPhoto        Feature = "auto_photo"
	Patrol           Feature = "patrol"
	FamiliarFaces    Feature = "familiar_faces"
	CloudBackup      Feature = "cloud_backup"
	UsageAnalytics   Feature = "usage_analytics"
	BlurUnknownFaces Feature = "blur_unknown_faces"
)

// Features lists every feature in a stable order.
var Features = []Feature{AutoPhoto, Patrol, FamiliarFaces, CloudBackup, UsageAnalytics, BlurUnknownFaces}

// Gated reports whether f handles personal data and so needs an accepted
// policy (blurring strangers only removes data, so it is not gated).
func Gated(f Feature) bool { return f != BlurUnknownFaces }

// FaceFeature reports whether f processes biometric data and so is refused
// in a prohibited region.
func FaceFeature(f Feature) bool { return f == Patrol || f == FamiliarFaces }

// Refusals the command layer maps to contract error codes.
var (
	ErrPolicyNotAccepted = errors.New("the owner has not accepted the privacy policy")
	ErrRegionProhibited  = errors.New("face features are prohibited in this region")
	ErrUnknownFeature    = errors.New("unknown feature")
	ErrBadValue          = errors.New("bad value")
)

// State is the policy as stored.
type State struct {
	Features        map[Feature]bool `json:"features"`
	PolicyVersion   string           `json:"policy_version"`
	Region          string           `json:"region"`
	PausedForPolicy string           `json:"paused_for_policy"`
}

// On reports whether the switch is on, whatever else holds.
func (s State) On(f Feature) bool { return s.Features[f] }

// Policy reads and changes State inside bbolt transactions.
type Policy struct {
	prohibited    []string
	initialRegion string
	ring          *keys.Keyring // people's identity and face keys; nil: no consent can be recorded
	logger        *slog.Logger
}

// New returns a Policy; initialRegion (from the configuration) applies until
// the owner sets one with set_region. ring keeps the keys that seal each
// person's key (see keys.Keyring); a Policy without one refuses to record
// consent.
func New(initialRegion string, prohibited []string, ring *keys.Keyring) *Policy {
	return &Policy{initialRegion: initialRegion, prohibited: slices.Clone(prohibited), ring: ring}
}

// SetLogger sets where the policy reports a keyring slot it could not
// overwrite (slog.Default otherwise).
func (p *Policy) SetLogger(l *slog.Logger) { p.logger = l }

var keyState = []byte("state")

// Read returns the current state; a new store reads as everything off.
func (p *Policy) Read(tx *bolt.Tx) (State, error) {
	s := State{Features: map[Feature]bool{}, Region: p.initialRegion}
	b := tx.Bucket(store.BucketPolicy)
	if b == nil {
		return s, errors.New("policy: bucket missing")
	}
	if raw := b.Get(keyState); raw != nil {
		if err := json.Unmarshal(raw, &s); err != nil {
			return s, fmt.Errorf("policy: state unreadable: %w", err)
		}
		if s.Features == nil {
			s.Features = map[Feature]bool{}
		}
	}
	return s, nil
}

// Prohibited reports whether face features are refused in region.
func (p *Policy) Prohibited(region string) bool { return slices.Contains(p.prohibited, region) }

// Allows answers whether data of feature f may be captured, kept or sent
// now: the switch is on, the policy accepted, no policy change awaited, and
// for face features the region permits them.
func (p *Policy) Allows(s State, f Feature) bool {
	if !s.Features[f] {
		return false
	}
	if Gated(f) && (s.PolicyVersion == "" || s.PausedForPolicy != "") {
		return false
	}
	if FaceFeature(f) && p.Prohibited(s.Region) {
		return false
	}
	return true
}

// Change describes what a write did, for callers that must act on it (for
// example delete photos when auto_photo goes off).
type Change struct {
	Before, After State
}

// TurnedOff reports whether f went from on to off.
func (c Change) TurnedOff(f Feature) bool { return c.Before.Features[f] && !c.After.Features[f] }

// SetFeatures applies the switches in one step: either all of them or, on a
// refusal, none.
func (p *Policy) SetFeatures(tx *bolt.Tx, now time.Time, set map[Feature]bool) (Change, error) {
	before, err := p.Read(tx)
	if err != nil {
		return Change{}, err
	}
	after := clone(before)
	names := make([]string, 0, len(set))
	for f := range set {
		names = append(names, string(f))
	}
	sort.Strings(names)
	for _, name := range names {
		f, on := Feature(name), set[Feature(name)]
		if !slices.Contains(Features, f) {
			return Change{}, fmt.Errorf("%w %q", ErrUnknownFeature, name)
		}
		if on && Gated(f) && before.PolicyVersion == "" {
			return Change{}, fmt.Errorf("%w: %s needs accept_policy first", ErrPolicyNotAccepted, f)
		}
		if on && FaceFeature(f) && p.Prohibited(before.Region) {
			return Change{}, fmt.Errorf("%w: %s is not available in %s", ErrRegionProhibited, f, before.Region)
		}
		after.Features[f] = on
	}
	for _, name := range names {
		f := Feature(name)
		if before.Features[f] == after.Features[f] {
			continue
		}
		if _, err := audit.Append(tx, now, "feature_changed", "", map[string]string{"feature": name, "on": strconv.FormatBool(after.Features[f])}); err != nil {
			return Change{}, err
		}
	}
	if before.Features[Patrol] && !after.Features[Patrol] {
		if err := BumpRecognitionTx(tx); err != nil {
			return Change{}, err
		}
	}
	return Change{Before: before, After: after}, p.write(tx, after)
}

// AcceptPolicy records that the owner accepted version. It lifts a pause
// waiting for exactly that version.
func (p *Policy) AcceptPolicy(tx *bolt.Tx, now time.Time, version string) (Change, error) {
	if version == "" || len(version) > 64 {
		return Change{}, fmt.Errorf("%w: version must be 1..64 characters", ErrBadValue)
	}
	before, err := p.Read(tx)
	if err != nil {
		return Change{}, err
	}
	after := clone(before)
	after.PolicyVersion = version
	if after.PausedForPolicy == version {
		after.PausedForPolicy = ""
	}
	if _, err := audit.Append(tx, now, "policy_accepted", "", map[string]string{"version": version, "previous": before.PolicyVersion}); err != nil {
		return Change{}, err
	}
	return Change{Before: before, After: after}, p.write(tx, after)
}

// SetRegion records the home's jurisdiction. Moving into a prohibited region
// switches the face features off; the caller erases face data.
func (p *Policy) SetRegion(tx *bolt.Tx, now time.Time, region string, valid func(string) bool) (Change, error) {
	if !valid(region) {
		return Change{}, fmt.Errorf("%w: region %q is not an ISO 3166-2 code", ErrBadValue, region)
	}
	before, err := p.Read(tx)
	if err != nil {
		return Change{}, err
	}
	after := clone(before)
	after.Region = region
	prohibited := p.Prohibited(region)
	if prohibited {
		if err := BumpRecognitionTx(tx); err != nil {
			return Change{}, err
		}
		for _, f := range Features {
			if FaceFeature(f) {
				after.Features[f] = false
			}
		}
	}
	if _, err := audit.Append(tx, now, "region_changed", "", map[string]string{"region": region, "previous": before.Region, "prohibited": strconv.FormatBool(prohibited)}); err != nil {
		return Change{}, err
	}
	return Change{Before: before, After: after}, p.write(tx, after)
}

// PauseFor makes every gated feature wait until version is accepted (a
// material policy change shipped with firmware).
func (p *Policy) PauseFor(tx *bolt.Tx, now time.Time, version string) (Change, error) {
	before, err := p.Read(tx)
	if err != nil {
		return Change{}, err
	}
	after := clone(before)
	after.PausedForPolicy = version
	if _, err := audit.Append(tx, now, "paused_for_policy", "", map[string]string{"version": version}); err != nil {
		return Change{}, err
	}
	return Change{Before: before, After: after}, p.write(tx, after)
}

func (p *Policy) write(tx *bolt.Tx, s State) error {
	raw, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return tx.Bucket(store.BucketPolicy).Put(keyState, raw)
}

func clone(s State) State {
	c := s
	c.Features = make(map[Feature]bool, len(s.Features))
	for k, v := range s.Features {
		c.Features[k] = v
	}
	return c
}
