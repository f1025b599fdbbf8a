// Package audit owns the append-only, hash-chained record of every decision
// that touches personal data: features, policy, region, consent, cap events,
// erasures and technician access. Each record carries the hash of the one
// before, and the store's meta bucket keeps the head, so an edited, removed or
// truncated record is found by Verify. Records hold opaque ids and decisions,
// never names, birthdays, images or templates.
//
// Append runs inside the caller's bbolt transaction: a decision and its
// record commit together or not at all.
package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/store"
)

var (
	keyHead = []byte("audit_head")
	// keyBase is the last record removed by retention: the chain now starts
	// after it, and its hash is what the first kept record links to.
	keyBase = []byte("audit_base")
)

type head struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// Append adds a record to the chain inside tx.
func Append(tx *bolt.Tx, at time.Time, typ, subject string, fields map[string]string) (Record, error) {
	b := tx.Bucket(store.BucketAudit)
	meta := tx.Bucket(store.BucketMeta)
	if b == nil || meta == nil {
		return Record{}, errors.New("audit: store buckets missing")
	}
	h, err := readHead(meta)
	if err != nil {
		return Record{}, err
	}
	r := Record{Seq: h.Seq + 1, At: at.UTC().Truncate(time.Microsecond), Type: typ, Subject: subject, Fields: fields, Prev: h.Hash}
	r.Hash = hashOf(r)
	raw, err := json.Marshal(r)
	if err != nil {
		return Record{}, fmt.Errorf("audit: %w", err)
	}
	if err := b.Put(store.Uint64Key(r.Seq), raw); err != nil {
		return Record{}, fmt.Errorf("audit: %w", err)
	}
	hraw, _ := json.Marshal(head{Seq: r.Seq, Hash: r.Hash})
	if err := meta.Put(keyHead, hraw); err != nil {
		return Record{}, fmt.Errorf("audit: %w", err)
	}
	return r, nil
}

// Newest returns up to limit records, newest first.
func Newest(tx *bolt.Tx, limit int) ([]Record, error) {
	b := tx.Bucket(store.BucketAudit)
	if b == nil {
		return nil, errors.New("audit: bucket missing")
	}
	var out []Record
	c := b.Cursor()
	for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
		var r Record
		if err := json.Unmarshal(v, &r); err != nil {
			return nil, fmt.Errorf("audit: record %x unreadable: %w", k, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// Prune removes the oldest records written before cutoff, at most max per
// call, and moves the chain's base past them so Verify still holds. Records
// are only ever removed from the old end.
//
// Records are in the order they were written, but their times come from a
// clock that may have been set forward and back: a record stamped in the
// future must not hold back the pruning of the older ones behind it. So
// Prune looks at up to max records from the old end and removes every one
// up to the last of them stamped before cutoff: a record written before a
// record that is old enough is at least as old.
func Prune(tx *bolt.Tx, cutoff time.Time, max int) (int, error) {
	b := tx.Bucket(store.BucketAudit)
	meta := tx.Bucket(store.BucketMeta)
	if b == nil || meta == nil {
		return 0, errors.New("audit: store buckets missing")
	}
	last := -1
	var lastRec Record
	c := b.Cursor()
	i := 0
	for k, v := c.First(); k != nil && i < max; k, v = c.Next() {
		var r Record
		if err := json.Unmarshal(v, &r); err != nil {
			return 0, fmt.Errorf("audit: record %x unreadable: %w", k, err)
		}
		if r.At.Before(cutoff) {
			last, lastRec = i, r
		}
		i++
	}
	if last < 0 {
		return 0, nil
	}
	for range last + 1 {
		if k, _ := c.First(); k == nil {
			break
		}
		if err := c.Delete(); err != nil {
			return 0, err
		}
	}
	raw, _ := json.Marshal(head{Seq: lastRec.Seq, Hash: lastRec.Hash})
	return last + 1, meta.Put(keyBase, raw)
}

// Count is the number of records in the chain, read from its head and
// base without walking it (Verify walks it and says whether it holds).
func Count(tx *bolt.Tx) (int, error) {
	meta := tx.Bucket(store.BucketMeta)
	if meta == nil {
		return 0, errors.New("audit: store buckets missing")
	}
	h, err := readHead(meta)
	if err != nil {
		return 0, err
	}
	base, err := readHeadKey(meta, keyBase)
	if err != nil {
		return 0, err
	}
	if h.Seq < base.Seq {
		return 0, fmt.Errorf("audit: head %d below base %d", h.Seq, base.Seq)
	}
	return int(h.Seq - base.Seq), nil
}

// Verify walks the whole chain and reports the first record that does not
// hold: unreadable, out of sequence (a record missing), a hash that does not
// match its content (edited), a link to the wrong predecessor, or a chain
// whose last record is not the recorded head (truncated).
func Verify(tx *bolt.Tx) Report {
	b := tx.Bucket(store.BucketAudit)
	meta := tx.Bucket(store.BucketMeta)
	if b == nil || meta == nil {
		return Report{Problem: "audit buckets missing"}
	}
	h, err := readHead(meta)
	if err != nil {
		return Report{Problem: err.Error()}
	}
	base, err := readHeadKey(meta, keyBase)
	if err != nil {
		return Report{Problem: err.Error()}
	}
	var rep Report
	prevSeq, prevHash := base.Seq, base.Hash
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		rep.Records++
		var r Record
		if err := json.Unmarshal(v, &r); err != nil {
			return bad(rep, prevSeq+1, "record unreadable")
		}
		switch {
		case len(k) != 8 || string(k) != string(store.Uint64Key(r.Seq)):
			return bad(rep, r.Seq, "record stored under the wrong key")
		case r.Seq != prevSeq+1:
			return bad(rep, prevSeq+1, "record missing")
		case r.Prev != prevHash:
			return bad(rep, r.Seq, "link to the previous record broken")
		case hashOf(r) != r.Hash:
			return bad(rep, r.Seq, "content does not match its hash (edited)")
		}
		prevSeq, prevHash = r.Seq, r.Hash
	}
	if prevSeq != h.Seq || prevHash != h.Hash {
		return bad(rep, prevSeq+1, fmt.Sprintf("chain ends at %d but the head says %d (records removed)", prevSeq, h.Seq))
	}
	rep.OK = true
	return rep
}

func bad(rep Report, seq uint64, problem string) Report {
	rep.BadSeq = seq
	rep.Problem = problem
	return rep
}

func readHead(meta *bolt.Bucket) (head, error) { return readHeadKey(meta, keyHead) }

func readHeadKey(meta *bolt.Bucket, key []byte) (head, error) {
	var h head
	raw := meta.Get(key)
	if raw == nil {
		return h, nil
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return h, fmt.Errorf("audit head unreadable: %w", err)
	}
	return h, nil
}

// hashOf is sha256 over the record's JSON with Hash left empty. encoding/json
// writes struct fields in order and map keys sorted, so it is canonical.
func hashOf(r Record) string {
	r.Hash = ""
	raw, _ := json.Marshal(r)
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}
