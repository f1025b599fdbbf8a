package outbox

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/keys"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
	"github.com/aibo-privacy/aibo-privacyd/internal/fsx"
)

// Sub-buckets of store.BucketOutbox, created by Open.
var (
	bucketArtifacts = []byte("artifacts") // artifact id -> record JSON, or an envelope sealing it whole
	bucketContent   = []byte("content")   // artifact id -> sealed content (inline artifacts only)
	bucketState     = []byte("state")     // keyBytes -> queued content bytes (uint64)
	// bucketBySlot indexes person-linked artifacts: slot (4 bytes, big
	// endian) + artifact id -> empty. Keys hold a keyring slot number and
	// a random id, nothing about the person.
	bucketBySlot = []byte("by_slot")
	// bucketByKind indexes the other artifacts: kind + 0x00 + artifact id.
	bucketByKind = []byte("by_kind")
)

var keyBytes = []byte("bytes")

const (
	recordVersion   = 1 // a record in clear; its content key sealed by the device key
	envelopeVersion = 2 // a person-linked record sealed whole by a keyring slot's key
)

// record is an artifact's bbolt record. Key is the artifact's content
// key, sealed by the key in DataSlot, a slot of the data keyring that is
// overwritten in place when the artifact goes (acked or dropped), so no
// key left on the device opens a copy of the content a freed page or an
// old flash block keeps; a record an older version wrote has no DataSlot
// and its Key is sealed by the device key (moved at start:
// MigrateKeysTx). A person-linked record is never stored like this: it is
// sealed whole in an envelope by the person's keyring slot, and RawKey
// holds its content key inside it.
type record struct {
	V           int            `json:"v"`
	Seq         uint64         `json:"seq"` // queue order
	ID          string         `json:"id"`
	Kind        policy.Kind    `json:"kind"`
	ContentType string         `json:"content_type"`
	SubjectID   string         `json:"subject_id,omitempty"`
	Attrs       map[string]any `json:"attrs,omitempty"`
	CreatedAt   time.Time      `json:"created_at"`
	QueuedAt    time.Time      `json:"queued_at"`
	Size        int64          `json:"size"`
	SHA256      string         `json:"sha256"`
	Inline      bool           `json:"inline,omitempty"`    // content in bucketContent, not in a file
	File        string         `json:"file,omitempty"`      // content file name in Dir (not inline)
	Segmented   int            `json:"segmented,omitempty"` // the file holds segments of this many bytes, each sealed (stream.go)
	Key         []byte         `json:"key,omitempty"`
	DataSlot    *uint32        `json:"data_slot,omitempty"`
	RawKey      []byte         `json:"raw_key,omitempty"`
	Attempts    int            `json:"attempts,omitempty"`
	Nacks       int            `json:"nacks,omitempty"`
	Masked      bool           `json:"masked,omitempty"`
	ShowsKnown  bool           `json:"shows_known,omitempty"`
	Generation  uint64         `json:"generation,omitempty"`
	Slot        *uint32        `json:"-"` // person-linked: the envelope's slot
}

// envelope is how a person-linked record is stored: only the queue order,
// the slot whose key seals the rest, the content's size and its file's
// random name are in clear (so the person's artifacts can all be dropped
// without opening them).
type envelope struct {
	V      int    `json:"v"`
	Seq    uint64 `json:"seq"`
	Slot   uint32 `json:"slot"`
	Size   int64  `json:"size"`
	File   string `json:"file,omitempty"`
	Sealed []byte `json:"sealed"`
}

func (r *record) meta() Meta {
	m := Meta{
		ID:          r.ID,
		Kind:        r.Kind,
		ContentType: r.ContentType,
		SubjectID:   r.SubjectID,
		Attrs:       r.Attrs,
		CreatedAt:   r.CreatedAt,
		Size:        r.Size,
		SHA256:      r.SHA256,
		Attempts:    r.Attempts,
		Nacks:       r.Nacks,
		QueuedAt:    r.QueuedAt,
		Masked:      r.Masked,
		ShowsKnown:  r.ShowsKnown,
		Generation:  r.Generation,
	}
	if r.Slot != nil {
		s := *r.Slot
		m.Slot = &s
	}
	return m
}

func (m Meta) clone() Meta {
	m.Attrs = maps.Clone(m.Attrs)
	if m.Slot != nil {
		s := *m.Slot
		m.Slot = &s
	}
	return m
}

func contentAAD(id string) []byte  { return []byte("outbox-content/" + id) }
func keyAAD(id string) []byte      { return []byte("outbox-key/" + id) }
func envelopeAAD(id string) []byte { return []byte("outbox-record/" + id) }

type bucketSet struct {
	arts, content, state, bySlot, byKind *bolt.Bucket
}

func buckets(tx *bolt.Tx) (bucketSet, error) {
	root := tx.Bucket(store.BucketOutbox)
	if root == nil {
		return bucketSet{}, errors.New("bucket outbox missing")
	}
	b := bucketSet{root.Bucket(bucketArtifacts), root.Bucket(bucketContent), root.Bucket(bucketState), root.Bucket(bucketBySlot), root.Bucket(bucketByKind)}
	if b.arts == nil || b.content == nil || b.state == nil || b.bySlot == nil || b.byKind == nil {
		return bucketSet{}, errors.New("outbox sub-buckets missing (Open creates them)")
	}
	return b, nil
}

func queuedBytes(state *bolt.Bucket) int64 {
	raw := state.Get(keyBytes)
	if len(raw) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(raw))
}

func setQueuedBytes(state *bolt.Bucket, n int64) error {
	return state.Put(keyBytes, store.Uint64Key(uint64(max(n, 0))))
}

func slotKey(slot uint32, id string) []byte {
	return append(binary.BigEndian.AppendUint32(nil, slot), id...)
}

func kindKey(kind policy.Kind, id string) []byte { return []byte(string(kind) + "\x00" + id) }

// errSealed marks a person-linked record whose slot's key is gone: it can
// never be read again (and should not exist: erasure deletes the records
// before it erases the slot).
var errSealed = errors.New("sealed by an erased key")

// decodeRecord reads a stored record or envelope; an envelope is opened
// with its slot's key from the keyring.
func (o *Outbox) decodeRecord(id string, raw []byte) (*record, error) {
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, fmt.Errorf("artifact %s record unreadable: %w", id, err)
	}
	if env.V != envelopeVersion {
		var r record
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, fmt.Errorf("artifact %s record unreadable: %w", id, err)
		}
		return &r, nil
	}
	if o.cfg.Keyring == nil {
		return nil, fmt.Errorf("artifact %s: %w (no keyring)", id, errSealed)
	}
	k, err := o.cfg.Keyring.Get(env.Slot)
	if err != nil {
		return nil, fmt.Errorf("artifact %s: %w: %w", id, errSealed, err)
	}
	defer clear(k)
	pt, err := keys.Open(k, env.Sealed, envelopeAAD(id))
	if err != nil {
		return nil, fmt.Errorf("artifact %s: %w: %w", id, errSealed, err)
	}
	var r record
	if err := json.Unmarshal(pt, &r); err != nil {
		return nil, fmt.Errorf("artifact %s record unreadable: %w", id, err)
	}
	r.Seq, r.Slot = env.Seq, &env.Slot
	return &r, nil
}

func (o *Outbox) readRecord(arts *bolt.Bucket, id string) (*record, error) {
	raw := arts.Get([]byte(id))
	if raw == nil {
		return nil, nil
	}
	return o.decodeRecord(id, raw)
}

// putRecord stores r, sealing it whole when it is person-linked.
func (o *Outbox) putRecord(arts *bolt.Bucket, r *record) error {
	raw, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if r.Slot != nil {
		if o.cfg.Keyring == nil {
			return errors.New("outbox: a person-linked artifact needs a keyring")
		}
		k, err := o.cfg.Keyring.Get(*r.Slot)
		if err != nil {
			return fmt.Errorf("outbox: artifact %s: %w", r.ID, err)
		}
		defer clear(k)
		sealed, err := keys.Seal(k, raw, envelopeAAD(r.ID))
		clear(raw)
		if err != nil {
			return err
		}
		if raw, err = json.Marshal(envelope{V: envelopeVersion, Seq: r.Seq, Slot: *r.Slot, Size: r.Size, File: r.File, Sealed: sealed}); err != nil {
			return err
		}
	}
	return arts.Put([]byte(r.ID), raw)
}

// putTx queues rec (assigning its Seq) unless its ID is taken or the
// queue would overflow; those two refusals write nothing.
func (o *Outbox) putTx(tx *bolt.Tx, rec *record, inline []byte) error {
	b, err := buckets(tx)
	if err != nil {
		return err
	}
	if b.arts.Get([]byte(rec.ID)) != nil {
		return fmt.Errorf("%w: %s", ErrDuplicate, rec.ID)
	}
	q := queuedBytes(b.state)
	if q+rec.Size > o.cfg.MaxQueueBytes {
		o.stats.add(StatRefusedFull, rec.Kind)
		return fmt.Errorf("%w: %d bytes queued, %d more would exceed %d", ErrQueueFull, q, rec.Size, o.cfg.MaxQueueBytes)
	}
	if rec.Seq, err = b.arts.NextSequence(); err != nil {
		return err
	}
	if err := o.putRecord(b.arts, rec); err != nil {
		return err
	}
	if rec.Slot != nil {
		err = b.bySlot.Put(slotKey(*rec.Slot, rec.ID), nil)
	} else {
		err = b.byKind.Put(kindKey(rec.Kind, rec.ID), nil)
	}
	if err != nil {
		return err
	}
	if rec.Inline {
		if err := b.content.Put([]byte(rec.ID), inline); err != nil {
			return err
		}
	}
	return setQueuedBytes(b.state, q+rec.Size)
}

// scanTx calls fn for every queued record in the store, person-linked ones
// opened with their slot's key. A record that cannot be read is passed as
// a record with only its ID (and Slot, for an envelope).
func (o *Outbox) scanTx(tx *bolt.Tx, fn func(r *record) error) error {
	b, err := buckets(tx)
	if err != nil {
		return err
	}
	return b.arts.ForEach(func(k, v []byte) error {
		r, err := o.decodeRecord(string(k), v)
		if err != nil || r.ID != string(k) {
			r = &record{ID: string(k)}
		}
		return fn(r)
	})
}

// slotRecordsTx returns the person-linked records sealed by slot's key,
// reading only those (through the slot index). Without open, only what
// the envelope keeps in clear is filled in (id, slot, size, file): enough
// to drop them all.
func (o *Outbox) slotRecordsTx(tx *bolt.Tx, slot uint32, open bool) ([]record, error) {
	b, err := buckets(tx)
	if err != nil {
		return nil, err
	}
	var out []record
	prefix := binary.BigEndian.AppendUint32(nil, slot)
	c := b.bySlot.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		id := string(k[len(prefix):])
		raw := b.arts.Get([]byte(id))
		if raw == nil {
			continue // index entry without a record (not expected)
		}
		s := slot
		if !open {
			var env envelope
			_ = json.Unmarshal(raw, &env)
			out = append(out, record{ID: id, Slot: &s, Size: env.Size, File: env.File, Inline: env.File == ""})
			continue
		}
		r, err := o.decodeRecord(id, raw)
		if err != nil {
			r = &record{ID: id, Slot: &s} // unreadable: erased all the same
		}
		out = append(out, *r)
	}
	return out, nil
}

// kindIDsTx lists the ids of the queued artifacts of kind that are not
// person-linked, through the kind index.
func kindIDsTx(tx *bolt.Tx, kind policy.Kind) ([]string, error) {
	b, err := buckets(tx)
	if err != nil {
		return nil, err
	}
	var out []string
	prefix := []byte(string(kind) + "\x00")
	c := b.byKind.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		out = append(out, string(k[len(prefix):]))
	}
	return out, nil
}

// deleteTx deletes the records sel accepts, with their inline contents
// and index entries, and returns them. An unreadable record is passed to
// sel with its id only.
func (o *Outbox) deleteTx(tx *bolt.Tx, sel func(*record) bool) ([]record, error) {
	var gone []record
	err := o.scanTx(tx, func(r *record) error {
		if sel(r) {
			gone = append(gone, *r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return gone, o.deleteRecordsTx(tx, gone)
}

// deleteIDsTx deletes the records of ids that exist, reading only those.
func (o *Outbox) deleteIDsTx(tx *bolt.Tx, ids map[string]bool) ([]record, error) {
	b, err := buckets(tx)
	if err != nil {
		return nil, err
	}
	var gone []record
	for id := range ids {
		v := b.arts.Get([]byte(id))
		if v == nil {
			continue
		}
		r, err := o.decodeRecord(id, v)
		if err != nil || r.ID != id {
			r = &record{ID: id}
			var env envelope
			if json.Unmarshal(v, &env) == nil && env.V == envelopeVersion {
				r.Slot = &env.Slot
			}
		}
		gone = append(gone, *r)
	}
	return gone, o.deleteRecordsTx(tx, gone)
}

func (o *Outbox) deleteRecordsTx(tx *bolt.Tx, gone []record) error {
	b, err := buckets(tx)
	if err != nil {
		return err
	}
	q := queuedBytes(b.state)
	for _, r := range gone {
		if err := b.arts.Delete([]byte(r.ID)); err != nil {
			return err
		}
		if err := b.content.Delete([]byte(r.ID)); err != nil {
			return err
		}
		if r.Slot != nil {
			err = b.bySlot.Delete(slotKey(*r.Slot, r.ID))
		} else {
			err = b.byKind.Delete(kindKey(r.Kind, r.ID))
		}
		if err != nil {
			return err
		}
		q -= r.Size
	}
	if len(gone) > 0 {
		return setQueuedBytes(b.state, q)
	}
	return nil
}

// errUnreadable marks content that will never be readable: its file is
// gone, or it does not authenticate.
var errUnreadable = errors.New("content unreadable")

// load opens an artifact's content for reading: nil record when it is no
// longer queued. A streamed content is read a segment at a time; any
// other is opened whole (it was sealed whole, and is small: every large
// photo is streamed). The caller closes the reader.
func (o *Outbox) load(id string) (*record, io.ReadCloser, error) {
	var rec *record
	var sealed []byte
	err := o.st.View(func(tx *bolt.Tx) error {
		b, err := buckets(tx)
		if err != nil {
			return err
		}
		if rec, err = o.readRecord(b.arts, id); err != nil || rec == nil {
			return err
		}
		if rec.Inline {
			sealed = slices.Clone(b.content.Get([]byte(id)))
		}
		return nil
	})
	if errors.Is(err, errSealed) {
		return &record{ID: id}, nil, fmt.Errorf("%w: %w", errUnreadable, err)
	}
	if err != nil || rec == nil {
		return nil, nil, err
	}
	k, err := o.contentKey(rec)
	if err != nil {
		return rec, nil, fmt.Errorf("artifact %s key: %w: %w", id, errUnreadable, err)
	}
	if rec.Segmented > 0 {
		if rec.Segmented != segmentSize {
			clear(k)
			return rec, nil, fmt.Errorf("artifact %s: %w: segments of %d bytes", id, errUnreadable, rec.Segmented)
		}
		r, err := o.openSegments(rec, k)
		if errors.Is(err, fs.ErrNotExist) {
			return rec, nil, fmt.Errorf("artifact %s: %w: %w", id, errUnreadable, err)
		}
		return rec, r, err
	}
	defer clear(k)
	if !rec.Inline {
		if sealed, err = os.ReadFile(o.path(rec.File)); errors.Is(err, fs.ErrNotExist) {
			return rec, nil, fmt.Errorf("artifact %s: %w: %w", id, errUnreadable, err)
		} else if err != nil {
			return rec, nil, fmt.Errorf("artifact %s: %w", id, err)
		}
	}
	pt, err := keys.Open(k, sealed, contentAAD(id))
	if err != nil {
		return rec, nil, fmt.Errorf("artifact %s content: %w: %w", id, errUnreadable, err)
	}
	if int64(len(pt)) != rec.Size {
		return rec, nil, fmt.Errorf("artifact %s content: %w: %d bytes, record says %d", id, errUnreadable, len(pt), rec.Size)
	}
	return rec, io.NopCloser(bytes.NewReader(pt)), nil
}

// contentKey is the key that seals r's content: inside the envelope for a
// person-linked record, sealed by its data slot's key otherwise (by the
// device key for a record an older version wrote).
func (o *Outbox) contentKey(r *record) ([]byte, error) {
	if r.Slot != nil {
		if len(r.RawKey) != keys.Size {
			return nil, keys.ErrOpen
		}
		return slices.Clone(r.RawKey), nil
	}
	if r.DataSlot == nil {
		return keys.Open(o.cfg.DeviceKey, r.Key, keyAAD(r.ID))
	}
	wrap, err := o.cfg.DataKeys.Get(*r.DataSlot)
	if err != nil {
		return nil, err
	}
	defer clear(wrap)
	return keys.Open(wrap, r.Key, keyAAD(r.ID))
}

// eraseDataSlots overwrites the data slots of records that are gone (their
// deletion committed); a failure leaves them to the scrub at the next
// start.
func (o *Outbox) eraseDataSlots(gone []record) {
	var slots []uint32
	for _, r := range gone {
		if r.DataSlot != nil {
			slots = append(slots, *r.DataSlot)
		}
	}
	if len(slots) == 0 {
		return
	}
	if err := o.cfg.DataKeys.Erase(slots...); err != nil {
		o.log.Error("outbox: artifact keys not erased yet; erased at the next start", "slots", len(slots), "err", err)
	}
}

// DataSlotsTx lists the data keyring slots the artifacts queued in tx use
// (for the scrub at start).
func (o *Outbox) DataSlotsTx(tx *bolt.Tx) (map[uint32]bool, error) {
	used := map[uint32]bool{}
	err := o.scanTx(tx, func(r *record) error {
		if r.DataSlot != nil {
			used[*r.DataSlot] = true
		}
		return nil
	})
	return used, err
}

// MigrateKeysTx moves, in tx, the content keys of artifacts an older
// version queued (sealed by the device key) under data slots of their
// own. The caller rewrites the store afterwards, so that no freed page
// keeps a copy the device key opens. It returns how many moved.
func (o *Outbox) MigrateKeysTx(tx *bolt.Tx) (int, error) {
	b, err := buckets(tx)
	if err != nil {
		return 0, err
	}
	var legacy []record
	err = o.scanTx(tx, func(r *record) error {
		if r.Kind != "" && r.Slot == nil && r.DataSlot == nil && len(r.Key) > 0 {
			legacy = append(legacy, *r)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	moved := 0
	for i := range legacy {
		r := &legacy[i]
		k, err := keys.Open(o.cfg.DeviceKey, r.Key, keyAAD(r.ID))
		if err != nil {
			continue // unreadable already: dropped when it is sent
		}
		slot, wrap, err := o.cfg.DataKeys.Alloc() // a rollback leaves it to the scrub at start
		if err != nil {
			clear(k)
			return moved, err
		}
		r.Key, err = keys.Seal(wrap, k, keyAAD(r.ID))
		clear(k)
		clear(wrap)
		if err != nil {
			return moved, err
		}
		r.DataSlot = &slot
		if err := o.putRecord(b.arts, r); err != nil {
			return moved, err
		}
		moved++
	}
	return moved, nil
}

// reconcile makes files, records and the byte counter agree after a crash
// and loads the in-memory index.
func (o *Outbox) reconcile() error {
	entries, err := os.ReadDir(o.cfg.Dir)
	if err != nil {
		return fmt.Errorf("outbox: reconcile: %w", err)
	}
	files := map[string]bool{}
	removed := 0
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, fsx.TempPrefix) {
			if err := os.Remove(filepath.Join(o.cfg.Dir, name)); err != nil {
				o.log.Warn("outbox: remove temp file", "file", name, "err", err)
			}
			removed++
			continue
		}
		if strings.HasSuffix(name, fileExt) && e.Type().IsRegular() {
			files[name] = true
		}
	}
	var kept []record
	var lost []record
	err = o.st.Update(func(tx *bolt.Tx) error {
		kept, lost = nil, nil
		b, err := buckets(tx)
		if err != nil {
			return err
		}
		var total int64
		lost, err = o.deleteTx(tx, func(r *record) bool {
			ok := r.V == recordVersion && (len(r.Key) > 0 || (r.Slot != nil && len(r.RawKey) == keys.Size))
			if ok && r.Inline {
				ok = b.content.Get([]byte(r.ID)) != nil
			} else if ok {
				ok = r.File != "" && files[r.File]
			}
			if ok {
				total += r.Size
				kept = append(kept, *r)
			}
			return !ok
		})
		if err != nil {
			return err
		}
		// Inline contents without a record (none expected).
		var strays [][]byte
		if err := b.content.ForEach(func(k, _ []byte) error {
			if b.arts.Get(k) == nil {
				strays = append(strays, slices.Clone(k))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range strays {
			if err := b.content.Delete(k); err != nil {
				return err
			}
		}
		if err := o.reindexTx(tx, kept); err != nil {
			return err
		}
		if queuedBytes(b.state) != total {
			return setQueuedBytes(b.state, total)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("outbox: reconcile: %w", err)
	}
	keepFile := map[string]bool{}
	for _, r := range kept {
		if !r.Inline {
			keepFile[r.File] = true
		}
	}
	for name := range files {
		if keepFile[name] {
			continue
		}
		if err := os.Remove(o.path(name)); err != nil {
			o.log.Warn("outbox: remove orphan content file", "file", name, "err", err)
		}
		removed++
	}
	if removed > 0 {
		if err := fsx.SyncDir(o.cfg.Dir); err != nil {
			return fmt.Errorf("outbox: reconcile: %w", err)
		}
	}
	slices.SortFunc(kept, func(a, b record) int { return cmpU64(a.Seq, b.Seq) })
	for i := range kept {
		r := &kept[i]
		it := &item{meta: r.meta(), seq: r.Seq, inline: r.Inline}
		o.items[r.ID] = it
		o.order = append(o.order, it)
		o.bytes += r.Size
	}
	if removed > 0 || len(lost) > 0 {
		o.log.Info("outbox reconciled", "files_removed", removed, "records_lost", len(lost), "queued", len(kept))
	}
	o.eraseDataSlots(lost)
	for _, r := range lost {
		o.log.Warn("artifact dropped: content missing", "artifact_id", r.ID, "kind", r.Kind, "size", r.Size)
		if o.cfg.OnDropped != nil {
			o.cfg.OnDropped(r.meta(), ReasonContentMissing)
		}
	}
	return nil
}

// reindexTx rebuilds the slot and kind indexes from the records kept (a
// store written before they existed has none).
func (o *Outbox) reindexTx(tx *bolt.Tx, kept []record) error {
	root := tx.Bucket(store.BucketOutbox)
	for _, name := range [][]byte{bucketBySlot, bucketByKind} {
		if err := root.DeleteBucket(name); err != nil {
			return err
		}
		if _, err := root.CreateBucket(name); err != nil {
			return err
		}
	}
	b, err := buckets(tx)
	if err != nil {
		return err
	}
	for _, r := range kept {
		if r.Slot != nil {
			err = b.bySlot.Put(slotKey(*r.Slot, r.ID), nil)
		} else {
			err = b.byKind.Put(kindKey(r.Kind, r.ID), nil)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// SlotCountTx counts, in tx, the person-linked artifacts sealed by slot's
// key.
func (o *Outbox) SlotCountTx(tx *bolt.Tx, slot uint32) (int, error) {
	b, err := buckets(tx)
	if err != nil {
		return 0, err
	}
	n := 0
	prefix := binary.BigEndian.AppendUint32(nil, slot)
	c := b.bySlot.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		n++
	}
	return n, nil
}

// Holdings is what the store holds in the queue, read from the store
// itself (not the in-memory index), for the inventory.
type Holdings struct {
	Kinds      map[policy.Kind]KindStats
	BySubject  map[string]int // person-linked artifacts per subject
	Unreadable int            // records no key on the device opens
}

// HoldingsTx reads every queued record in tx.
func (o *Outbox) HoldingsTx(tx *bolt.Tx) (Holdings, error) {
	h := Holdings{Kinds: map[policy.Kind]KindStats{}, BySubject: map[string]int{}}
	now := o.cfg.Now()
	err := o.scanTx(tx, func(r *record) error {
		if r.Kind == "" {
			h.Unreadable++
			return nil
		}
		k := h.Kinds[r.Kind]
		k.Count++
		k.Bytes += r.Size
		k.OldestAgeSeconds = max(k.OldestAgeSeconds, now.Sub(r.QueuedAt).Seconds())
		h.Kinds[r.Kind] = k
		if r.SubjectID != "" {
			h.BySubject[r.SubjectID]++
		}
		return nil
	})
	return h, err
}
