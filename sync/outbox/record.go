package outbox

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/keys"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
	"github.com/aibo-privacy/aibo-privacyd/internal/fsx"
)

// Sub-buckets of store.BucketOutbox, created by Open.
var (
	bucketArtifacts = []byte("artifacts") // artifact id -> record JSON
	bucketContent   = []byte("content")   // artifact id -> sealed content (inline artifacts only)
	bucketState     = []byte("state")     // keyBytes -> queued content bytes (uint64)
)

var keyBytes = []byte("bytes")

const recordVersion = 1

// record is an artifact's bbolt record. Key is the artifact's content key,
// sealed by the device key: deleting the record erases the content.
type record struct {
	V           int            `json:"v"`
	Seq         uint64         `json:"seq"` // queue order
	ID          string         `json:"id"`
	Kind        string         `json:"kind"`
	ContentType string         `json:"content_type"`
	SubjectID   string         `json:"subject_id,omitempty"`
	Attrs       map[string]any `json:"attrs,omitempty"`
	CreatedAt   time.Time      `json:"created_at"`
	QueuedAt    time.Time      `json:"queued_at"`
	Size        int64          `json:"size"`
	SHA256      string         `json:"sha256"`
	Inline      bool           `json:"inline,omitempty"` // content in bucketContent, not in a file
	File        string         `json:"file,omitempty"`   // content file name in Dir (not inline)
	Key         []byte         `json:"key"`
	Attempts    int            `json:"attempts,omitempty"`
	Nacks       int            `json:"nacks,omitempty"`
}

func (r *record) meta() Meta {
	return Meta{
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
	}
}

func (m Meta) clone() Meta {
	m.Attrs = maps.Clone(m.Attrs)
	return m
}

func contentAAD(id string) []byte { return []byte("outbox-content/" + id) }
func keyAAD(id string) []byte     { return []byte("outbox-key/" + id) }

func buckets(tx *bolt.Tx) (arts, content, state *bolt.Bucket, err error) {
	root := tx.Bucket(store.BucketOutbox)
	if root == nil {
		return nil, nil, nil, errors.New("bucket outbox missing")
	}
	arts, content, state = root.Bucket(bucketArtifacts), root.Bucket(bucketContent), root.Bucket(bucketState)
	if arts == nil || content == nil || state == nil {
		return nil, nil, nil, errors.New("outbox sub-buckets missing (Open creates them)")
	}
	return arts, content, state, nil
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

func readRecord(arts *bolt.Bucket, id string) (*record, error) {
	raw := arts.Get([]byte(id))
	if raw == nil {
		return nil, nil
	}
	var r record
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("artifact %s record unreadable: %w", id, err)
	}
	return &r, nil
}

func putRecord(arts *bolt.Bucket, r *record) error {
	raw, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return arts.Put([]byte(r.ID), raw)
}

// putTx queues rec (assigning its Seq) unless its ID is taken or the
// queue would overflow; those two refusals write nothing.
func (o *Outbox) putTx(tx *bolt.Tx, rec *record, inline []byte) error {
	arts, content, state, err := buckets(tx)
	if err != nil {
		return err
	}
	if arts.Get([]byte(rec.ID)) != nil {
		return fmt.Errorf("%w: %s", ErrDuplicate, rec.ID)
	}
	q := queuedBytes(state)
	if q+rec.Size > o.cfg.MaxQueueBytes {
		return fmt.Errorf("%w: %d bytes queued, %d more would exceed %d", ErrQueueFull, q, rec.Size, o.cfg.MaxQueueBytes)
	}
	if rec.Seq, err = arts.NextSequence(); err != nil {
		return err
	}
	if err := putRecord(arts, rec); err != nil {
		return err
	}
	if rec.Inline {
		if err := content.Put([]byte(rec.ID), inline); err != nil {
			return err
		}
	}
	return setQueuedBytes(state, q+rec.Size)
}

// deleteTx deletes the records sel accepts, with their inline contents,
// and returns them. An unreadable record is deleted too (reported with
// its id only).
func deleteTx(tx *bolt.Tx, sel func(*record) bool) ([]record, error) {
	arts, content, state, err := buckets(tx)
	if err != nil {
		return nil, err
	}
	var gone []record
	err = arts.ForEach(func(k, v []byte) error {
		var r record
		if json.Unmarshal(v, &r) != nil || r.ID != string(k) {
			r = record{ID: string(k)}
		}
		if sel(&r) {
			gone = append(gone, r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return gone, deleteRecords(arts, content, state, gone)
}

// deleteIDsTx deletes the records of ids that exist, reading only those.
func deleteIDsTx(tx *bolt.Tx, ids map[string]bool) ([]record, error) {
	arts, content, state, err := buckets(tx)
	if err != nil {
		return nil, err
	}
	var gone []record
	for id := range ids {
		v := arts.Get([]byte(id))
		if v == nil {
			continue
		}
		var r record
		if json.Unmarshal(v, &r) != nil || r.ID != id {
			r = record{ID: id}
		}
		gone = append(gone, r)
	}
	return gone, deleteRecords(arts, content, state, gone)
}

func deleteRecords(arts, content, state *bolt.Bucket, gone []record) error {
	q := queuedBytes(state)
	for _, r := range gone {
		if err := arts.Delete([]byte(r.ID)); err != nil {
			return err
		}
		if err := content.Delete([]byte(r.ID)); err != nil {
			return err
		}
		q -= r.Size
	}
	if len(gone) > 0 {
		return setQueuedBytes(state, q)
	}
	return nil
}

// errUnreadable marks content that will never be readable: its file is
// gone, or it does not authenticate.
var errUnreadable = errors.New("content unreadable")

// load reads an artifact's content: nil record when it is no longer queued.
func (o *Outbox) load(id string) (*record, []byte, error) {
	var rec *record
	var sealed []byte
	err := o.st.View(func(tx *bolt.Tx) error {
		arts, content, _, err := buckets(tx)
		if err != nil {
			return err
		}
		if rec, err = readRecord(arts, id); err != nil || rec == nil {
			return err
		}
		if rec.Inline {
			sealed = slices.Clone(content.Get([]byte(id)))
		}
		return nil
	})
	if err != nil || rec == nil {
		return nil, nil, err
	}
	if !rec.Inline {
		if sealed, err = os.ReadFile(o.path(rec.File)); errors.Is(err, fs.ErrNotExist) {
			return rec, nil, fmt.Errorf("artifact %s: %w: %w", id, errUnreadable, err)
		} else if err != nil {
			return rec, nil, fmt.Errorf("artifact %s: %w", id, err)
		}
	}
	k, err := keys.Open(o.cfg.DeviceKey, rec.Key, keyAAD(id))
	if err != nil {
		return rec, nil, fmt.Errorf("artifact %s key: %w: %w", id, errUnreadable, err)
	}
	defer clear(k)
	pt, err := keys.Open(k, sealed, contentAAD(id))
	if err != nil {
		return rec, nil, fmt.Errorf("artifact %s content: %w: %w", id, errUnreadable, err)
	}
	if int64(len(pt)) != rec.Size {
		return rec, nil, fmt.Errorf("artifact %s content: %w: %d bytes, record says %d", id, errUnreadable, len(pt), rec.Size)
	}
	return rec, pt, nil
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
		arts, content, state, err := buckets(tx)
		if err != nil {
			return err
		}
		var total int64
		lost, err = deleteTx(tx, func(r *record) bool {
			ok := r.V == recordVersion && len(r.Key) > 0
			if ok && r.Inline {
				ok = content.Get([]byte(r.ID)) != nil
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
		if err := content.ForEach(func(k, _ []byte) error {
			if arts.Get(k) == nil {
				strays = append(strays, slices.Clone(k))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range strays {
			if err := content.Delete(k); err != nil {
				return err
			}
		}
		if queuedBytes(state) != total {
			return setQueuedBytes(state, total)
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
	for _, r := range lost {
		o.log.Warn("artifact dropped: content missing", "artifact_id", r.ID, "kind", r.Kind, "size", r.Size)
		if o.cfg.OnDropped != nil {
			o.cfg.OnDropped(r.meta(), ReasonContentMissing)
		}
	}
	return nil
}
