// Package outbox owns the artifacts waiting for the cloud's ok ack: photos,
// sightings, face templates, inventories and usage reports on their way out
// of the house. It keeps them durably in bbolt (bucket store.BucketOutbox)
// and in sealed files under its own directory, so they survive restarts and
// power loss, and publishes them over MQTT as contract section 4 describes:
// a manifest on artifacts/{aid}/meta, then raw chunks on
// artifacts/{aid}/chunk/{n}, resent with the same artifact_id until the
// cloud acks on artifacts/{aid}/ack.
//
// The outbox never decides what may be sent. It asks Config.Gate right
// before the manifest and before every chunk; a no means consent is gone,
// and the artifact is erased instead of published.
//
// At rest, every artifact's content is sealed (AES-256-GCM) with its own
// random key; that key is stored sealed by the device key in the artifact's
// bbolt record. Contents up to InlineMax (16 KiB) are stored sealed inline in
// bbolt (sub-bucket "content"), larger ones in a sealed file
// Config.Dir/{aid}.{random}.art written with fsx.WriteFileAtomic before the record
// commits. Deleting the record deletes the key, which erases the content
// even where a file or a freed bbolt page lingers (architecture invariant 4).
// Content is never logged; logs carry ids, kinds and sizes only.
//
// Enqueue is durable when it returns. Concurrent Enqueue calls share one
// bbolt commit (group commit without bbolt Batch's fixed delay);
// EnqueueTx queues inside a caller's transaction instead. New artifacts
// are refused with ErrQueueFull beyond MaxQueueBytes; queued ones are
// never dropped to make room.
//
// A publish is finished only when the cloud's ok ack arrives: a broker's
// PUBACK (paho's token) proves nothing about the cloud.
package outbox

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/keys"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
	"github.com/aibo-privacy/aibo-privacyd/internal/fsx"
)

// Limits and defaults.
const (
	// InlineMax is the largest content stored sealed inside bbolt rather
	// than in a file of its own.
	InlineMax = 16 << 10

	DefaultMaxQueueBytes = 64 << 20
	DefaultChunkSize     = 64 << 10
	MinChunkSize         = 1 << 10
	MaxChunkSize         = 128 << 10
	DefaultAckTimeout    = 30 * time.Second
	DefaultMaxNacks      = 10
	DefaultRetryMin      = time.Second
	DefaultRetryMax      = 10 * time.Minute

	// Window is how many artifacts may wait for their ack at once while the
	// next ones are sent.
	Window = 8

	maxAttrsBytes = 16 << 10 // encoded manifest attrs
	fileExt       = ".art"
)

// Drop reasons the outbox itself gives to OnDropped.
const (
	ReasonGate           = "consent_withdrawn" // MaySend said no right before a publish
	ReasonNackLimit      = "nack_limit"        // MaxNacks not-ok acks
	ReasonContentMissing = "content_missing"   // file or inline content gone, or unreadable
)

var (
	// ErrQueueFull refuses a new artifact when the queued bytes plus its
	// size would exceed MaxQueueBytes. Queued artifacts are never dropped
	// to make room.
	ErrQueueFull = errors.New("outbox: queue full")
	// ErrDuplicate refuses an artifact whose ID is already queued.
	ErrDuplicate = errors.New("outbox: artifact id already queued")
)

var idRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Artifact is something to send to the cloud.
type Artifact struct {
	ID          string         // artifact_id; generated (32 hex chars, random) when empty; else [A-Za-z0-9_-]{1,64}
	Kind        policy.Kind    // photo, sighting, face_template, inventory, usage
	ContentType string         // default application/octet-stream
	SubjectID   string         // when about one person ("" otherwise; never for usage)
	Attrs       map[string]any // manifest attrs; ids and counts, never personal data beyond ids
	CreatedAt   time.Time      // default: now
	Content     []byte         // only on Enqueue; sealed at rest with a per-artifact key
	// Stream, instead of Content, is content already written through
	// NewStream (large photos: never whole in memory). Prepare takes it
	// over; the artifact gets the stream's id.
	Stream *Stream
	// Slot makes the artifact person-linked: its whole record (subject,
	// attrs, times, content key) is sealed by the key in this keyring slot,
	// so erasing the slot erases every copy, freed pages included. Only the
	// queue order and the slot number stay in clear.
	Slot *uint32
	// Facts MaySend needs about a photo, kept on the device only (never in
	// the manifest): see policy.Outgoing.
	Masked, ShowsKnown bool
	Generation         uint64
}

// Meta is an artifact without its content, as queued.
type Meta struct {
	ID          string
	Kind        policy.Kind
	ContentType string
	SubjectID   string
	Attrs       map[string]any
	CreatedAt   time.Time
	Size        int64  // content bytes
	SHA256      string // hex of the content
	Attempts    int    // complete sends (manifest and every chunk); persisted with each nack
	Nacks       int    // not-ok acks received (durable)
	QueuedAt    time.Time
	Slot        *uint32 // person-linked: the slot whose key seals the record
	Masked      bool
	ShowsKnown  bool
	Generation  uint64
}

// Outgoing is what MaySend needs to know of m.
func (m Meta) Outgoing() policy.Outgoing {
	return policy.Outgoing{Kind: m.Kind, Subject: m.SubjectID, Masked: m.Masked, ShowsKnown: m.ShowsKnown, Generation: m.Generation}
}

// KindStats is the queue of one kind, for GET /v1/queue.
type KindStats struct {
	Count            int     `json:"count"`
	Bytes            int64   `json:"bytes"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
}

// SlotKeys hands out the key of a keyring slot (core/keys.Keyring).
type SlotKeys interface {
	Get(slot uint32) ([]byte, error)
}

// DataKeys hands out, reads and overwrites the slots that seal the content
// keys of artifacts that are not person-linked, one slot each (the data
// keyring, core/keys.Keyring).
type DataKeys interface {
	Alloc() (uint32, []byte, error)
	Get(slot uint32) ([]byte, error)
	Erase(slots ...uint32) error
}

// Config configures an Outbox.
type Config struct {
	Dir           string        // data_dir/outbox: sealed content files (mode 0700 dir, 0600 files)
	DeviceKey     []byte        // opens the content keys of records an older version wrote, until they move
	DataKeys      DataKeys      // seals the content key of each artifact that is not person-linked, a slot each
	Keyring       SlotKeys      // seals person-linked records whole (Artifact.Slot)
	MaxQueueBytes int64         // mqtt.max_queue_bytes (default 64 MiB)
	ChunkSize     int           // mqtt.chunk_size (1024..131072, default 65536)
	AckTimeout    time.Duration // mqtt.ack_timeout: resend an unacked artifact after this (default 30 s)
	MaxNacks      int           // not-ok acks before giving up (default 10)
	// RetryMin and RetryMax bound the exponential backoff after a not-ok
	// ack (defaults 1 s and 10 min).
	RetryMin, RetryMax time.Duration
	Now                func() time.Time // wall clock for timestamps and ages; timers use the monotonic clock
	Logger             *slog.Logger

	// MaySend is asked right before the manifest and before every chunk.
	// Refuse means consent is gone: nothing more of the artifact is
	// published and it is dropped (record, key and content). Hold means
	// not now (a policy change awaits acceptance): it stays queued, the
	// artifacts behind it go on, and it is asked again later. It runs on
	// the sender goroutine and must not call back into the Outbox. Nil
	// sends everything.
	MaySend func(Meta) policy.Verdict
	// AckedTx runs inside the transaction that forgets an artifact after
	// its ok ack; DroppedTx inside the one that erases it without one.
	// An error rolls that transaction back.
	AckedTx   func(tx *bolt.Tx, m Meta) error
	DroppedTx func(tx *bolt.Tx, m Meta, reason string) error
	// OnAcked is called after an ok ack made the deletion durable.
	OnAcked func(Meta)
	// OnDropped is called after an artifact was erased without an ok ack:
	// MaySend said no, a Drop, the nack limit, or content lost (found at
	// Open).
	OnDropped func(m Meta, reason string)

	// MaxSendRate bounds the bytes published a second, on average, with
	// one chunk at once at most (mqtt.max_send_rate; see pace.go); 0
	// leaves the pace to the broker's acknowledgements.
	MaxSendRate int64
}

// Outbox is the durable artifact queue. Create it with Open; publish with
// Run.
type Outbox struct {
	st  *store.Store
	cfg Config
	log *slog.Logger

	// group commit of Enqueue (see commit)
	gmu   sync.Mutex
	gq    []*enqReq
	gbusy bool

	mu     sync.Mutex
	items  map[string]*item
	order  []*item // by seq: FIFO
	bytes  int64
	tomb   map[string]bool // removed before their commit hook added them
	acks   map[string]ackMsg
	wakeCh chan struct{} // sender: something changed
	ackCh  chan struct{} // ack loop: acks pending

	running atomic.Bool
	stats   stats
	pace    *pacer // the sender's
}

type sendState int

const (
	idle    sendState = iota // waiting to be sent (again)
	sending                  // the sender is publishing it
	waiting                  // sent completely; waiting for the ack until deadline
)

// item is the in-memory index entry of a queued artifact. Fields other than
// gone and sendMu are guarded by Outbox.mu.
type item struct {
	meta      Meta
	seq       uint64
	inline    bool
	state     sendState
	deadline  time.Time // waiting: resend after this
	notBefore time.Time // after a nack: not before this
	acked     bool      // an ok ack is being made durable
	held      bool      // MaySend said not now; Wake asks again at once
	// published is set once the artifact was published in full (its last
	// chunk acknowledged by the broker) since the daemon started; earlier
	// when it was queued by an earlier run (it may have been published in
	// full then). An ok ack counts only for an artifact published, or
	// earlier and being resent.
	published, earlier bool
	// deferredOK is an ok ack that arrived while the first send was still
	// going: it counts once that send is complete, and not otherwise.
	deferredOK bool
	// deferredNack is a not-ok ack that arrived while sending; applied
	// when the send is over.
	deferredNack *ackMsg
	cancel       context.CancelFunc

	gone   atomic.Bool // removed from the store: publish nothing more
	sendMu sync.Mutex  // held by the sender around check+publish of one message
}

// Open prepares the outbox directory and sub-buckets and reconciles files
// with records: temporary files and content files without a record are
// removed; records whose content is missing are dropped, logged, and
// reported to OnDropped.
func Open(st *store.Store, cfg Config) (*Outbox, error) {
	if st == nil {
		return nil, errors.New("outbox: nil store")
	}
	if cfg.Dir == "" {
		return nil, errors.New("outbox: empty Dir")
	}
	if len(cfg.DeviceKey) != keys.Size {
		return nil, fmt.Errorf("outbox: device key has %d bytes, want %d", len(cfg.DeviceKey), keys.Size)
	}
	if cfg.DataKeys == nil {
		return nil, errors.New("outbox: no data keyring for the artifacts' keys")
	}
	if cfg.MaxQueueBytes < 0 || cfg.ChunkSize < 0 || cfg.MaxSendRate < 0 || cfg.AckTimeout < 0 || cfg.MaxNacks < 0 || cfg.RetryMin < 0 || cfg.RetryMax < 0 {
		return nil, errors.New("outbox: negative limit in config")
	}
	if cfg.MaxQueueBytes == 0 {
		cfg.MaxQueueBytes = DefaultMaxQueueBytes
	}
	if cfg.ChunkSize == 0 {
		cfg.ChunkSize = DefaultChunkSize
	}
	if cfg.ChunkSize < MinChunkSize || cfg.ChunkSize > MaxChunkSize {
		return nil, fmt.Errorf("outbox: chunk size %d outside %d..%d", cfg.ChunkSize, MinChunkSize, MaxChunkSize)
	}
	if cfg.AckTimeout == 0 {
		cfg.AckTimeout = DefaultAckTimeout
	}
	if cfg.MaxNacks == 0 {
		cfg.MaxNacks = DefaultMaxNacks
	}
	if cfg.RetryMin == 0 {
		cfg.RetryMin = DefaultRetryMin
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = DefaultRetryMax
	}
	cfg.RetryMax = max(cfg.RetryMax, cfg.RetryMin)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	cfg.DeviceKey = slices.Clone(cfg.DeviceKey)
	o := &Outbox{
		st:     st,
		cfg:    cfg,
		log:    log,
		items:  map[string]*item{},
		tomb:   map[string]bool{},
		acks:   map[string]ackMsg{},
		wakeCh: make(chan struct{}, 1),
		ackCh:  make(chan struct{}, 1),
		pace:   newPacer(cfg.MaxSendRate, cfg.ChunkSize),
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	if err := os.Chmod(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	err := st.Update(func(tx *bolt.Tx) error {
		root := tx.Bucket(store.BucketOutbox)
		if root == nil {
			return errors.New("bucket outbox missing (store schema < 2)")
		}
		for _, name := range [][]byte{bucketArtifacts, bucketContent, bucketState, bucketBySlot, bucketByKind} {
			if _, err := root.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("outbox: open: %w", err)
	}
	if err := o.reconcile(); err != nil {
		return nil, err
	}
	return o, nil
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails on Linux
	return hex.EncodeToString(b)
}

// fileName names a content file: the id plus a random part, so that a
// refused duplicate never overwrites the queued artifact's file.
func fileName(id string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return id + "." + hex.EncodeToString(b) + fileExt
}

func (o *Outbox) path(name string) string { return filepath.Join(o.cfg.Dir, name) }

// Prepared is an artifact sealed (and, when large, written to its file)
// but not yet queued: hand it to EnqueueTx inside a transaction, and call
// Discard if that transaction does not commit.
type Prepared struct {
	o         *Outbox
	rec       record
	inline    []byte // sealed content, when stored in bbolt
	committed atomic.Bool
}

// Meta describes the prepared artifact.
func (p *Prepared) Meta() Meta { return p.rec.meta().clone() }

// Discard removes the content file and overwrites the data slot of an
// artifact whose transaction did not commit. It does nothing once the
// artifact is queued. (What a crash leaves behind is removed by the next
// Open and the scrub at start, and is unreadable anyway: its key was never
// committed.)
func (p *Prepared) Discard() {
	if p == nil || p.committed.Load() {
		return
	}
	p.o.eraseDataSlots([]record{p.rec})
	if p.rec.File == "" {
		return
	}
	if err := os.Remove(p.o.path(p.rec.File)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		p.o.log.Warn("outbox: remove discarded content", "artifact_id", p.rec.ID, "err", err)
	}
}

// Prepare validates a, seals its content under a fresh key and, when it is
// larger than InlineMax, writes it durably to its file. Content written
// through a Stream (a.Stream) is finished and taken over instead: its file
// becomes the artifact's.
func (o *Outbox) Prepare(a Artifact) (*Prepared, error) {
	if a.Stream != nil {
		if len(a.Content) > 0 || (a.ID != "" && a.ID != a.Stream.id) || a.Stream.o != o {
			return nil, errors.New("outbox: a streamed artifact carries its stream's id and no other content")
		}
		if a.Stream.err != nil {
			return nil, a.Stream.err
		}
		a.ID = a.Stream.id
	}
	if a.ID == "" {
		a.ID = newID()
	}
	if !idRe.MatchString(a.ID) {
		return nil, fmt.Errorf("outbox: artifact id %q must match [A-Za-z0-9_-]{1,64}", a.ID)
	}
	if !slices.Contains(policy.Kinds, a.Kind) {
		return nil, fmt.Errorf("outbox: artifact %s: unknown kind %q", a.ID, a.Kind)
	}
	if a.Slot != nil && a.Kind != policy.KindSighting && a.Kind != policy.KindFaceTemplate {
		return nil, fmt.Errorf("outbox: artifact %s: only sightings and face templates are person-linked", a.ID)
	}
	if a.SubjectID != "" && a.Kind == policy.KindUsage {
		return nil, fmt.Errorf("outbox: artifact %s: usage artifacts carry no subject id", a.ID)
	}
	size := int64(len(a.Content))
	if a.Stream != nil {
		size = a.Stream.size
	}
	if size == 0 {
		return nil, fmt.Errorf("outbox: artifact %s: empty content", a.ID)
	}
	if size > o.cfg.MaxQueueBytes {
		o.stats.add(StatRefusedFull, a.Kind)
		return nil, fmt.Errorf("%w: artifact %s has %d bytes, the queue holds %d", ErrQueueFull, a.ID, size, o.cfg.MaxQueueBytes)
	}
	if a.Attrs != nil {
		enc, err := json.Marshal(a.Attrs)
		if err != nil {
			return nil, fmt.Errorf("outbox: artifact %s attrs: %w", a.ID, err)
		}
		if len(enc) > maxAttrsBytes {
			return nil, fmt.Errorf("outbox: artifact %s attrs: %d bytes encoded, at most %d", a.ID, len(enc), maxAttrsBytes)
		}
		a.Attrs = maps.Clone(a.Attrs)
	}
	if a.ContentType == "" {
		a.ContentType = "application/octet-stream"
	}
	now := o.cfg.Now()
	if a.CreatedAt.IsZero() {
		a.CreatedAt = now
	}
	var sum []byte
	var k, sealed []byte
	if a.Stream != nil {
		sum, k = a.Stream.sum.Sum(nil), slices.Clone(a.Stream.key)
	} else {
		h := sha256.Sum256(a.Content)
		sum, k = h[:], keys.New()
		var err error
		if sealed, err = keys.Seal(k, a.Content, contentAAD(a.ID)); err != nil {
			return nil, fmt.Errorf("outbox: seal artifact %s: %w", a.ID, err)
		}
	}
	var sealedKey, rawKey []byte
	var dataSlot *uint32
	if a.Slot != nil {
		if o.cfg.Keyring == nil {
			return nil, fmt.Errorf("outbox: artifact %s is person-linked but the outbox has no keyring", a.ID)
		}
		if _, err := o.cfg.Keyring.Get(*a.Slot); err != nil {
			return nil, fmt.Errorf("outbox: artifact %s: slot %d: %w", a.ID, *a.Slot, err)
		}
		rawKey = k // sealed with the whole record, by the slot's key
	} else {
		slot, wrap, err := o.cfg.DataKeys.Alloc()
		if err != nil {
			return nil, fmt.Errorf("outbox: artifact %s key slot: %w", a.ID, err)
		}
		sealedKey, err = keys.Seal(wrap, k, keyAAD(a.ID))
		clear(wrap)
		clear(k)
		if err != nil {
			o.eraseDataSlots([]record{{DataSlot: &slot}})
			return nil, fmt.Errorf("outbox: seal artifact %s key: %w", a.ID, err)
		}
		dataSlot = &slot
	}
	var slot *uint32
	if a.Slot != nil {
		s := *a.Slot
		slot = &s
	}
	p := &Prepared{o: o, rec: record{
		V:           recordVersion,
		ID:          a.ID,
		Kind:        a.Kind,
		ContentType: a.ContentType,
		SubjectID:   a.SubjectID,
		Attrs:       a.Attrs,
		CreatedAt:   a.CreatedAt,
		QueuedAt:    now,
		Size:        size,
		SHA256:      hex.EncodeToString(sum),
		Key:         sealedKey,
		DataSlot:    dataSlot,
		RawKey:      rawKey,
		Slot:        slot,
		Masked:      a.Masked,
		ShowsKnown:  a.ShowsKnown,
		Generation:  a.Generation,
	}}
	if a.Stream != nil {
		p.rec.File, p.rec.Segmented = fileName(a.ID), segmentSize
		if err := a.Stream.finish(p.rec.File); err != nil {
			o.eraseDataSlots([]record{p.rec})
			return nil, fmt.Errorf("outbox: write artifact %s: %w", a.ID, err)
		}
		return p, nil
	}
	if len(a.Content) <= InlineMax {
		p.rec.Inline = true
		p.inline = sealed
		return p, nil
	}
	p.rec.File = fileName(a.ID)
	if err := fsx.WriteFileAtomic(o.path(p.rec.File), sealed, 0o600); err != nil {
		o.eraseDataSlots([]record{p.rec})
		return nil, fmt.Errorf("outbox: write artifact %s: %w", a.ID, err)
	}
	return p, nil
}

// EnqueueTx queues a prepared artifact inside the caller's read-write
// transaction, so that it is queued if and only if tx commits (e.g. "mark
// photo for upload" and "queue artifact" together). It returns ErrQueueFull
// or ErrDuplicate without writing anything; the caller may then commit the
// rest of tx or not. After a rollback call p.Discard. fn given to
// store.Batch may call EnqueueTx again on a retry.
func (o *Outbox) EnqueueTx(tx *bolt.Tx, p *Prepared) (Meta, error) {
	if p == nil || p.o != o {
		return Meta{}, errors.New("outbox: artifact prepared by another outbox")
	}
	rec := p.rec
	if err := o.putTx(tx, &rec, p.inline); err != nil {
		return Meta{}, err
	}
	tx.OnCommit(func() {
		p.committed.Store(true)
		o.insert(&rec)
	})
	return rec.meta().clone(), nil
}

// Enqueue queues a durably: when it returns nil the artifact survives a
// crash. It returns ErrQueueFull when the queued bytes plus a's size would
// exceed MaxQueueBytes. Concurrent calls share commits (group commit). ctx
// is checked before any work; a commit once started is not abandoned.
func (o *Outbox) Enqueue(ctx context.Context, a Artifact) (Meta, error) {
	if err := ctx.Err(); err != nil {
		return Meta{}, err
	}
	p, err := o.Prepare(a)
	if err != nil {
		return Meta{}, err
	}
	r := &enqReq{p: p, done: make(chan bool, 1)}
	if err := o.commit(r); err != nil {
		p.Discard()
		return Meta{}, err
	}
	return r.meta, nil
}

// enqReq is one Enqueue waiting for a group commit.
type enqReq struct {
	p    *Prepared
	meta Meta
	err  error     // set by the leader before done
	done chan bool // true: you are the next leader; false: your result is in err
}

// commit runs r in a shared transaction. Whoever finds no commit in
// progress leads: it commits everything queued so far in one transaction
// (one fsync), then hands the lead to the first request that arrived
// meanwhile. Unlike bbolt's Batch there is no fixed delay: a lone caller
// commits at once, and under load each commit takes all who waited for the
// previous one.
func (o *Outbox) commit(r *enqReq) error {
	o.gmu.Lock()
	o.gq = append(o.gq, r)
	if o.gbusy {
		o.gmu.Unlock()
		if lead := <-r.done; !lead {
			return r.err
		}
		o.gmu.Lock()
	} else {
		o.gbusy = true
	}
	batch := o.gq
	o.gq = nil
	o.gmu.Unlock()

	err := o.st.Update(func(tx *bolt.Tx) error {
		for _, q := range batch {
			q.meta, q.err = o.EnqueueTx(tx, q.p)
			if q.err != nil && !errors.Is(q.err, ErrQueueFull) && !errors.Is(q.err, ErrDuplicate) {
				return q.err
			}
		}
		return nil
	})
	if err != nil {
		for _, q := range batch {
			q.meta, q.err = Meta{}, fmt.Errorf("outbox: enqueue: %w", err)
		}
	}

	o.gmu.Lock()
	if len(o.gq) > 0 {
		next := o.gq[0]
		o.gmu.Unlock()
		next.done <- true
	} else {
		o.gbusy = false
		o.gmu.Unlock()
	}
	for _, q := range batch {
		if q != r {
			q.done <- false
		}
	}
	return r.err
}

// insert adds a committed record to the in-memory index.
func (o *Outbox) insert(rec *record) {
	it := &item{meta: rec.meta(), seq: rec.Seq, inline: rec.Inline}
	o.mu.Lock()
	if o.tomb[rec.ID] {
		delete(o.tomb, rec.ID)
		o.mu.Unlock()
		return
	}
	o.items[rec.ID] = it
	i, _ := slices.BinarySearchFunc(o.order, it.seq, func(x *item, s uint64) int { return cmpU64(x.seq, s) })
	o.order = slices.Insert(o.order, i, it)
	o.bytes += rec.Size
	o.mu.Unlock()
	o.wake()
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Wake asks again at once about the artifacts MaySend held (the owner
// accepted a policy, say).
func (o *Outbox) Wake() {
	o.mu.Lock()
	for _, it := range o.order {
		if it.held {
			it.held, it.notBefore = false, time.Time{}
		}
	}
	o.mu.Unlock()
	o.wake()
}

func (o *Outbox) wake() {
	select {
	case o.wakeCh <- struct{}{}:
	default:
	}
}

// Drop erases every queued artifact match accepts (records, keys, inline
// contents in one transaction, then files), including one being sent right
// now: when Drop returns, nothing more of a dropped artifact is published.
// OnDropped is called for each with reason. It scans the store, so an
// artifact committed a moment ago is seen; match runs inside the
// transaction and must not open one of its own.
func (o *Outbox) Drop(match func(Meta) bool, reason string) ([]Meta, error) {
	if match == nil {
		return nil, errors.New("outbox: nil match")
	}
	return o.removeWith(func(tx *bolt.Tx) ([]record, error) {
		return o.deleteTx(tx, func(r *record) bool { return r.Kind != "" && match(r.meta()) })
	}, false, reason)
}

// DropTx is Drop inside the caller's transaction, so the artifacts go in
// the same commit as the decision that drops them. It chooses them by
// scanning the store in tx (never a cache an unfinished commit hook has
// not filled yet). It returns the function to call once tx has committed:
// it forgets them in memory (stopping a send in progress), removes their
// files and reports them dropped. If tx rolls back, nothing is dropped and
// after must not be called. match must not open a transaction of its own.
func (o *Outbox) DropTx(tx *bolt.Tx, match func(Meta) bool, reason string) (after func(), err error) {
	if match == nil {
		return nil, errors.New("outbox: nil match")
	}
	return o.dropTx(tx, func(tx *bolt.Tx) ([]record, error) {
		return o.deleteTx(tx, func(r *record) bool { return r.Kind != "" && match(r.meta()) })
	}, reason)
}

// DropSlotTx drops, in tx, the person-linked artifacts sealed by slot's
// key whose kind is in kinds (every kind when kinds is empty) and that
// were created before before (zero: whenever), reading only those through
// the slot index. An artifact whose record cannot be read goes in any
// case. See DropTx for after.
func (o *Outbox) DropSlotTx(tx *bolt.Tx, slot uint32, kinds []policy.Kind, before time.Time, reason string) (after func(), dropped []Meta, err error) {
	var gone []record
	// Dropping every kind of every age needs nothing sealed: the envelopes
	// go unopened.
	all := before.IsZero() && (len(kinds) == 0 || (slices.Contains(kinds, policy.KindSighting) && slices.Contains(kinds, policy.KindFaceTemplate)))
	after, err = o.dropTx(tx, func(tx *bolt.Tx) ([]record, error) {
		recs, err := o.slotRecordsTx(tx, slot, !all)
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			if all || r.Kind == "" || ((len(kinds) == 0 || slices.Contains(kinds, r.Kind)) && createdBefore(&r, before)) {
				gone = append(gone, r)
			}
		}
		return gone, o.deleteRecordsTx(tx, gone)
	}, reason)
	if err != nil {
		return nil, nil, err
	}
	for _, r := range gone {
		dropped = append(dropped, r.meta())
	}
	return after, dropped, nil
}

// createdBefore reports whether r was created before before (always when
// before is zero).
func createdBefore(r *record, before time.Time) bool {
	return before.IsZero() || r.CreatedAt.Before(before)
}

// DropKindsTx drops, in tx, every artifact of kinds that is not
// person-linked and was created before before (zero: whenever), through
// the kind index. See DropTx for after.
func (o *Outbox) DropKindsTx(tx *bolt.Tx, kinds []policy.Kind, before time.Time, reason string) (after func(), n int, err error) {
	after, err = o.dropTx(tx, func(tx *bolt.Tx) ([]record, error) {
		ids := map[string]bool{}
		for _, k := range kinds {
			list, err := kindIDsTx(tx, k)
			if err != nil {
				return nil, err
			}
			for _, id := range list {
				ids[id] = true
			}
		}
		if !before.IsZero() {
			b, err := buckets(tx)
			if err != nil {
				return nil, err
			}
			for id := range ids {
				if r, err := o.readRecord(b.arts, id); err == nil && r != nil && !createdBefore(r, before) {
					delete(ids, id) // recorded after the cutoff: it stays
				}
			}
		}
		n = len(ids)
		return o.deleteIDsTx(tx, ids)
	}, reason)
	return after, n, err
}

// ResealSlotTx moves, in tx, every artifact sealed by the key of slot from
// to the key of slot to: the records are opened and sealed again (their
// contents, sealed by keys inside them, stay as they are). The caller
// erases slot from once tx has committed, so what a freed page keeps of
// the old records can no longer be opened. It returns how many moved.
func (o *Outbox) ResealSlotTx(tx *bolt.Tx, from, to uint32) (int, error) {
	recs, err := o.slotRecordsTx(tx, from, true)
	if err != nil {
		return 0, err
	}
	b, err := buckets(tx)
	if err != nil {
		return 0, err
	}
	moved := 0
	var lost []record
	for i := range recs {
		r := &recs[i]
		if err := b.bySlot.Delete(slotKey(from, r.ID)); err != nil {
			return 0, err
		}
		if r.Kind == "" { // unreadable: it goes with the old key
			lost = append(lost, *r)
			continue
		}
		s := to
		r.Slot = &s
		if err := o.putRecord(b.arts, r); err != nil {
			return 0, err
		}
		if err := b.bySlot.Put(slotKey(to, r.ID), nil); err != nil {
			return 0, err
		}
		moved++
	}
	if len(lost) > 0 {
		for i := range lost {
			s := to
			lost[i].Slot = &s // its index entry under from is already gone
		}
		if err := o.deleteRecordsTx(tx, lost); err != nil {
			return 0, err
		}
	}
	return moved, nil
}

// SealPersonLinkedTx seals whole, in tx, the records of person-linked
// artifacts that an older version stored in clear (a sighting or
// face_template with a subject and no slot): slotOf names the slot of the
// person's face key; one it cannot name is dropped. It returns how many
// were sealed and dropped. The daemon runs it once at start.
func (o *Outbox) SealPersonLinkedTx(tx *bolt.Tx, slotOf func(subject string) (uint32, bool)) (sealed, dropped int, err error) {
	b, err := buckets(tx)
	if err != nil {
		return 0, 0, err
	}
	var clearRecs []record
	err = b.arts.ForEach(func(k, v []byte) error {
		var head struct {
			V int `json:"v"`
		}
		if json.Unmarshal(v, &head) != nil || head.V == envelopeVersion {
			return nil // sealed already (or unreadable: reconcile's matter)
		}
		r, err := o.decodeRecord(string(k), v)
		if err == nil && r.SubjectID != "" && (r.Kind == policy.KindSighting || r.Kind == policy.KindFaceTemplate) {
			clearRecs = append(clearRecs, *r)
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	var gone []record
	for i := range clearRecs {
		r := &clearRecs[i]
		slot, ok := slotOf(r.SubjectID)
		k, kerr := keys.Open(o.cfg.DeviceKey, r.Key, keyAAD(r.ID))
		if !ok || kerr != nil {
			gone = append(gone, *r)
			continue
		}
		if err := b.byKind.Delete(kindKey(r.Kind, r.ID)); err != nil {
			return 0, 0, err
		}
		r.Key, r.RawKey, r.Slot = nil, k, &slot
		if err := o.putRecord(b.arts, r); err != nil {
			return 0, 0, err
		}
		if err := b.bySlot.Put(slotKey(slot, r.ID), nil); err != nil {
			return 0, 0, err
		}
		sealed++
	}
	if err := o.deleteRecordsTx(tx, gone); err != nil {
		return 0, 0, err
	}
	for _, r := range gone {
		if err := o.droppedTx(tx, r.meta(), ReasonContentMissing); err != nil {
			return 0, 0, err
		}
	}
	if len(gone) > 0 {
		tx.OnCommit(func() { o.forget(gone, false, ReasonContentMissing) })
	}
	return sealed, len(gone), nil
}

// dropTx runs del in the caller's tx and the DroppedTx hook for each
// record it deleted.
func (o *Outbox) dropTx(tx *bolt.Tx, del func(tx *bolt.Tx) ([]record, error), reason string) (after func(), err error) {
	gone, err := del(tx)
	if err != nil {
		return nil, fmt.Errorf("outbox: remove: %w", err)
	}
	for _, r := range gone {
		if err := o.droppedTx(tx, r.meta(), reason); err != nil {
			return nil, err
		}
	}
	return func() { o.forget(gone, false, reason) }, nil
}

func (o *Outbox) droppedTx(tx *bolt.Tx, m Meta, reason string) error {
	if o.cfg.DroppedTx == nil || m.Kind == "" {
		return nil
	}
	return o.cfg.DroppedTx(tx, m, reason)
}

// removeIDs is remove for a known set of ids, reading only those records.
func (o *Outbox) removeIDs(ids map[string]bool, acked bool, reason string) ([]Meta, error) {
	return o.removeWith(func(tx *bolt.Tx) ([]record, error) { return o.deleteIDsTx(tx, ids) }, acked, reason)
}

// removeWith erases the artifacts del deletes: records (with their keys)
// and inline contents in one transaction, with the AckedTx or DroppedTx
// hook of each, then the rest (forget).
func (o *Outbox) removeWith(del func(tx *bolt.Tx) ([]record, error), acked bool, reason string) ([]Meta, error) {
	var gone []record
	err := o.st.Update(func(tx *bolt.Tx) error {
		var err error
		if gone, err = del(tx); err != nil {
			return err
		}
		for _, r := range gone {
			m := r.meta()
			switch {
			case m.Kind == "":
			case acked && o.cfg.AckedTx != nil:
				err = o.cfg.AckedTx(tx, m)
			case !acked:
				err = o.droppedTx(tx, m, reason)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("outbox: remove: %w", err)
	}
	return o.forget(gone, acked, reason), nil
}

// forget finishes removing the artifacts whose records a committed
// transaction deleted: the in-memory entries (stopping a send in progress
// between messages), then the files; then it calls OnAcked or OnDropped.
func (o *Outbox) forget(gone []record, acked bool, reason string) []Meta {
	if len(gone) == 0 {
		return nil
	}
	metas := make([]Meta, len(gone))
	var removed []*item
	o.mu.Lock()
	for i := range gone {
		id := gone[i].ID
		metas[i] = gone[i].meta()
		it := o.items[id]
		if it == nil {
			o.tomb[id] = true // its commit hook has not run yet
			continue
		}
		metas[i].Attempts = max(metas[i].Attempts, it.meta.Attempts)
		metas[i].Nacks = max(metas[i].Nacks, it.meta.Nacks)
		it.gone.Store(true)
		if it.cancel != nil {
			it.cancel()
		}
		delete(o.items, id)
		o.bytes -= it.meta.Size
		removed = append(removed, it)
	}
	o.order = slices.DeleteFunc(o.order, func(it *item) bool { return it.gone.Load() })
	o.mu.Unlock()
	// Wait out a message being published right now.
	for _, it := range removed {
		it.sendMu.Lock()
		//lint:ignore SA2001 an empty critical section is the point: a barrier
		it.sendMu.Unlock()
	}
	o.eraseDataSlots(gone)
	files := 0
	for i := range gone {
		if gone[i].Inline {
			continue
		}
		files++
		if gone[i].File == "" {
			continue
		}
		if err := os.Remove(o.path(gone[i].File)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			o.log.Warn("outbox: remove content file (its key is gone; Open removes it later)", "artifact_id", gone[i].ID, "err", err)
		}
	}
	if files > 0 {
		if err := fsx.SyncDir(o.cfg.Dir); err != nil {
			o.log.Warn("outbox: sync dir", "err", err)
		}
	}
	o.wake()
	for _, m := range metas {
		if acked {
			o.stats.add(StatAcked, m.Kind)
			o.log.Info("artifact acked", "artifact_id", m.ID, "kind", m.Kind, "size", m.Size, "attempts", m.Attempts)
			if o.cfg.OnAcked != nil {
				o.cfg.OnAcked(m)
			}
		} else {
			o.log.Info("artifact dropped", "artifact_id", m.ID, "kind", m.Kind, "size", m.Size, "reason", reason)
			if o.cfg.OnDropped != nil {
				o.cfg.OnDropped(m, reason)
			}
		}
	}
	return metas
}

// Summary counts the queued artifacts and their content bytes.
func (o *Outbox) Summary() (pending int, bytes int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.items), o.bytes
}

// ByKind summarizes the queue per kind.
func (o *Outbox) ByKind() map[policy.Kind]KindStats {
	now := o.cfg.Now()
	out := map[policy.Kind]KindStats{}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, it := range o.order {
		s := out[it.meta.Kind]
		s.Count++
		s.Bytes += it.meta.Size
		s.OldestAgeSeconds = max(s.OldestAgeSeconds, now.Sub(it.meta.QueuedAt).Seconds())
		out[it.meta.Kind] = s
	}
	return out
}

// List returns every queued artifact, oldest first.
func (o *Outbox) List() []Meta {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]Meta, len(o.order))
	for i, it := range o.order {
		out[i] = it.meta.clone()
	}
	return out
}
