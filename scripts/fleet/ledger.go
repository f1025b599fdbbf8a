package main

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/sync/outbox"
)

// ledger is the fleet's own record of every artifact a robot queued, as
// the robot queued it (kind, size, hash), against which the cloud checks
// what it assembles. It holds hashes, never content.
type ledger struct {
	mu   sync.Mutex
	arts map[string]*entry // robot/artifact_id
}

type entry struct {
	robot, id string
	kind      policy.Kind
	size      int64
	sha256    string
	queuedAt  time.Time
	dropped   string    // why the robot erased it unsent ("" if not)
	arrived   time.Time // first whole, verified arrival at the cloud
	copies    int       // whole copies assembled (resends make more than one)
	corrupt   int       // copies whose bytes did not match
}

func newLedger() *ledger { return &ledger{arts: map[string]*entry{}} }

func (l *ledger) queued(robot string, m outbox.Meta) {
	l.mu.Lock()
	l.arts[robot+"/"+m.ID] = &entry{robot: robot, id: m.ID, kind: m.Kind, size: m.Size, sha256: m.SHA256, queuedAt: time.Now()}
	l.mu.Unlock()
}

func (l *ledger) dropped(robot, id, reason string) {
	l.mu.Lock()
	if e := l.arts[robot+"/"+id]; e != nil {
		e.dropped = reason
	}
	l.mu.Unlock()
}

// verdicts of a whole copy at the cloud
const (
	arrivedFirst = iota
	arrivedAgain
	arrivedCorrupt
	arrivedUnknown
)

// arrive checks a whole copy the cloud assembled against what the robot
// queued: its manifest's hash and size, and the bytes' own hash.
func (l *ledger) arrive(robot, id, manifestSHA string, size int64, content []byte) int {
	sum := sha256.Sum256(content)
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.arts[robot+"/"+id]
	if e == nil {
		return arrivedUnknown
	}
	if hex.EncodeToString(sum[:]) != e.sha256 || manifestSHA != e.sha256 || size != e.size || int64(len(content)) != e.size {
		e.corrupt++
		return arrivedCorrupt
	}
	e.copies++
	if e.arrived.IsZero() {
		e.arrived = time.Now()
		return arrivedFirst
	}
	return arrivedAgain
}

// outcome sums the ledger: every artifact arrived whole, was erased unsent
// by a withdrawal, or is missing.
type outcome struct {
	Queued    int            `json:"queued"`
	Arrived   int            `json:"arrived"`
	Withdrawn int            `json:"withdrawn_unsent"` // erased by a withdrawal before it went up
	Missing   int            `json:"missing"`
	Corrupt   int            `json:"corrupt_copies"`
	Copies    int            `json:"copies"` // whole copies assembled; more than arrived means resends reached the cloud
	ByKind    map[string]int `json:"arrived_by_kind"`
	missing   []string
}

func (l *ledger) outcome(robots map[string]bool) outcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	o := outcome{ByKind: map[string]int{}}
	for _, e := range l.arts {
		if robots != nil && !robots[e.robot] {
			continue
		}
		o.Queued++
		o.Corrupt += e.corrupt
		o.Copies += e.copies
		switch {
		case !e.arrived.IsZero():
			o.Arrived++
			o.ByKind[string(e.kind)]++
		case e.dropped == outbox.ReasonGate:
			o.Withdrawn++
		default:
			o.Missing++
			if len(o.missing) < 10 {
				o.missing = append(o.missing, e.robot+"/"+e.id+" ("+string(e.kind)+", dropped: "+e.dropped+")")
			}
		}
	}
	return o
}

// arrivedOf counts first arrivals of kind since t.
func (l *ledger) arrivedOf(kind policy.Kind) (arrived, queued int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.arts {
		if e.kind != kind {
			continue
		}
		queued++
		if !e.arrived.IsZero() {
			arrived++
		}
	}
	return arrived, queued
}
