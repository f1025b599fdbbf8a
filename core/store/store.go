// Package store owns the daemon's one bbolt file: its bucket layout, its
// schema version and the migrations between versions. It holds metadata and
// wrapped keys, never image bytes; it knows nothing of policy or MQTT.
package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/aibo-privacy/aibo-privacyd/internal/fsx"
)

// Buckets of schema version 1. Each is owned by one package; the comment
// names it.
var (
	BucketMeta     = []byte("meta")     // store: schema version, device facts
	BucketPolicy   = []byte("policy")   // core/policy: features, accepted policy, region
	BucketAudit    = []byte("audit")    // core/audit: hash-chained records by sequence
	BucketDays     = []byte("days")     // capture: per-day counters and cap reservation (Intake and Selector)
	BucketPhotos   = []byte("photos")   // capture: admitted photos and their wrapped keys
	BucketIntake   = []byte("intake")   // capture: spool files already decided (Intake)
	BucketCommands = []byte("commands") // agent/command: handled command ids and results
)

// Buckets added by schema version 2.
var (
	BucketOutbox   = []byte("outbox")   // sync/outbox: queued artifacts until the cloud's ok ack
	BucketFirmware = []byte("firmware") // firmware: offers, chunks received, staged slots, highest version
	BucketSubjects = []byte("subjects") // core/policy: people's consent records, sealed whole by their identity keys
	BucketFaces    = []byte("faces")    // facerec: templates and sightings, sealed by each person's face key
	BucketScoring  = []byte("scoring")  // capture (Selector): learned weights, uploaded photos' features, usage days
)

// Buckets added by schema version 3.
var (
	BucketEvents = []byte("events") // sync/events: events the broker has not taken yet (erase requests, enrollment_needed)
)

// Sub-buckets of BucketCommands.
var (
	BucketCommandIDs   = []byte("ids")   // command id -> stored result
	BucketCommandOrder = []byte("order") // sequence -> command id, oldest first
)

var keySchemaVersion = []byte("schema_version")

// Migration moves the store from version To-1 to To inside one transaction.
type Migration struct {
	To   int
	Name string
	Up   func(tx *bolt.Tx) error
}

// Migrations is the history of the schema. The first schema is created by a
// migration too, so the mechanism runs on every new store.
var Migrations = []Migration{
	{To: 1, Name: "initial buckets", Up: func(tx *bolt.Tx) error {
		for _, b := range [][]byte{BucketPolicy, BucketAudit, BucketDays, BucketPhotos, BucketIntake, BucketCommands} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		cmds := tx.Bucket(BucketCommands)
		for _, b := range [][]byte{BucketCommandIDs, BucketCommandOrder} {
			if _, err := cmds.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}},
	{To: 2, Name: "outbox, firmware, subjects, faces, scoring", Up: func(tx *bolt.Tx) error {
		for _, b := range [][]byte{BucketOutbox, BucketFirmware, BucketSubjects, BucketFaces, BucketScoring} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}},
	{To: 3, Name: "durable events", Up: func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(BucketEvents)
		return err
	}},
	// Version 4 changes what the buckets hold, not which exist: people's
	// identity and face keys, consent records sealed whole, person-linked
	// outbox records sealed whole. The daemon moves the data at start
	// (agent's migrateTx), then rewrites the file (Rewrite). The number
	// keeps an older daemon from opening a store it would misread.
	{To: 4, Name: "per-purpose keys (data moved by the daemon at start)", Up: func(tx *bolt.Tx) error { return nil }},
	// Version 5 moves the keys of photos and of queued artifacts that are
	// not person-linked from the device key to slots of the data keyring
	// (data.keys), overwritten in place when they are deleted; the daemon
	// moves them at start and rewrites the file, as for version 4.
	{To: 5, Name: "photo and artifact keys in erasable slots (data moved by the daemon at start)", Up: func(tx *bolt.Tx) error { return nil }},
}

// Store is the open database.
type Store struct {
	db   *bolt.DB
	path string

	mu        sync.Mutex
	commitErr error     // the last commit's failure, nil once one succeeds
	failedAt  time.Time // when it failed
}

// Open opens (creating if needed) the store at path and brings its schema
// up to date with Migrations.
func Open(path string) (*Store, error) { return OpenWith(path, Migrations) }

// OpenWith opens the store and applies migrations, which must be ordered by
// To starting at 1. A store written by a newer schema is refused: running it
// under older code could lose data.
func OpenWith(path string, migrations []Migration) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	// An existing file's mode is bbolt's to keep: a state.db readable by
	// others (copied in, restored from a backup) is made private first.
	if _, err := fsx.Private(path, false); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("open store %s: locked by another process", path)
		}
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{db: db, path: path}
	s.removeCheckCopies()
	if err := s.migrate(migrations); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// removeCheckCopies removes snapshots a crash left in the middle of Check.
func (s *Store) removeCheckCopies() {
	ents, _ := os.ReadDir(filepath.Dir(s.path))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), checkPrefix) {
			os.Remove(filepath.Join(filepath.Dir(s.path), e.Name()))
		}
	}
}

func (s *Store) migrate(migrations []Migration) error {
	latest := 0
	for i, m := range migrations {
		if m.To != i+1 {
			return fmt.Errorf("migrations out of order at %d (%s)", m.To, m.Name)
		}
		latest = m.To
	}
	current, err := s.readVersion()
	if err != nil {
		return err
	}
	if current > latest {
		return fmt.Errorf("open store: schema version %d is newer than this daemon knows (%d)", current, latest)
	}
	for _, m := range migrations[current:] {
		err := s.db.Update(func(tx *bolt.Tx) error {
			meta, err := tx.CreateBucketIfNotExists(BucketMeta)
			if err != nil {
				return err
			}
			if err := m.Up(tx); err != nil {
				return err
			}
			return meta.Put(keySchemaVersion, Uint64Key(uint64(m.To)))
		})
		if err != nil {
			return fmt.Errorf("migrate store to %d (%s): %w", m.To, m.Name, err)
		}
	}
	return nil
}

func (s *Store) readVersion() (int, error) {
	v := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(BucketMeta)
		if meta == nil {
			return nil
		}
		raw := meta.Get(keySchemaVersion)
		if raw == nil {
			return nil
		}
		if len(raw) != 8 {
			return fmt.Errorf("schema version has %d bytes", len(raw))
		}
		v = int(binary.BigEndian.Uint64(raw))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

// SchemaVersion is the version the store is at.
func (s *Store) SchemaVersion() int {
	v, _ := s.readVersion()
	return v
}

// Update runs fn in a read-write transaction; it commits (with fsync) when fn
// returns nil.
func (s *Store) Update(fn func(tx *bolt.Tx) error) error { return s.commit(s.db.Update, fn) }

// View runs fn in a read-only transaction.
func (s *Store) View(fn func(tx *bolt.Tx) error) error { return s.db.View(fn) }

// Batch is Update coalesced with concurrent callers into one commit; fn may
// run more than once and must be idempotent.
func (s *Store) Batch(fn func(tx *bolt.Tx) error) error { return s.commit(s.db.Batch, fn) }

// errNotRun stands for fn's answer until it has given one.
var errNotRun = errors.New("store: transaction not run")

// commit runs fn with run (Update or Batch) and records the outcome of a
// commit: a transaction that fn let commit and that failed anyway (the
// file system full, read-only or failing: ENOSPC, EROFS, EIO, EDQUOT) is
// remembered until one commits. A transaction fn refused says nothing of
// the store.
func (s *Store) commit(run func(func(*bolt.Tx) error) error, fn func(*bolt.Tx) error) error {
	fnErr := errNotRun
	err := run(func(tx *bolt.Tx) error {
		fnErr = errNotRun // a panic in fn leaves it so
		fnErr = fn(tx)
		return fnErr
	})
	switch {
	case err == nil:
		s.mu.Lock()
		s.commitErr = nil
		s.mu.Unlock()
	case fnErr == nil:
		s.mu.Lock()
		s.commitErr, s.failedAt = err, time.Now()
		s.mu.Unlock()
	}
	return err
}

// CommitErr says why the last commit failed, when none has succeeded
// since (nil otherwise): reads may still answer while nothing can be
// written.
func (s *Store) CommitErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.commitErr == nil {
		return nil
	}
	return fmt.Errorf("the last commit failed (%s) and none has succeeded since: %w", s.failedAt.UTC().Format(time.RFC3339), s.commitErr)
}

// Path is the file the store lives in.
func (s *Store) Path() string { return s.path }

// Size is the file's size in bytes.
func (s *Store) Size() int64 {
	var n int64
	_ = s.db.View(func(tx *bolt.Tx) error { n = tx.Size(); return nil })
	return n
}

// checkPrefix names the snapshot Check writes beside the store; a crash
// can leave one, which Open removes.
const checkPrefix = ".check-"

// Check walks every page of a consistent snapshot and reports the first
// inconsistency. Concurrent writers cannot confuse it, and it never holds
// them back.
//
// bbolt's Tx.Check inside a read transaction is documented as unsafe with
// concurrent writers: it reads the database's shared freelist, which later
// commits change, so a page the snapshot still reaches shows as "reachable
// freed" in a healthy store (and the race detector flags the read). So
// Check copies the snapshot (Tx.WriteTo in a read transaction, which
// writers do not wait for) to a file beside the store, opens the copy,
// where nothing else writes, and checks that. The copy holds what the
// store file holds (sealed records, freed pages), has the store's mode
// and is removed at once; it is never written anywhere else. When it
// cannot be written (a full disk) the store is not checked: Check says
// so (ErrNotChecked) rather than check the live file under the writer
// lock, which would stall every command for the check's duration.
func (s *Store) Check() error {
	dir := filepath.Dir(s.path)
	f, err := createSnapshot(dir, checkPrefix+"*")
	if err != nil {
		return fmt.Errorf("%w: no room beside the store for its snapshot: %w", ErrNotChecked, err)
	}
	name := f.Name()
	defer os.Remove(name)
	err = s.db.View(func(tx *bolt.Tx) error {
		_, err := tx.WriteTo(f)
		return err
	})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%w: no room beside the store for its snapshot: %w", ErrNotChecked, err)
	}
	snap, err := bolt.Open(name, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("store integrity: snapshot unreadable: %w", err)
	}
	defer snap.Close()
	return snap.View(checkTx)
}

// ErrNotChecked: Check could not copy the snapshot it checks.
var ErrNotChecked = errors.New("store integrity not checked")

// createSnapshot makes the snapshot's file (a test makes it fail).
var createSnapshot = os.CreateTemp

func checkTx(tx *bolt.Tx) error {
	var first error
	for err := range tx.Check() { // drain: Check's goroutine blocks otherwise
		if first == nil {
			first = fmt.Errorf("store integrity: %w", err)
		}
	}
	return first
}

// Rewrite copies every live record into a fresh file and puts it in place
// of the store's, then reopens it: the pages bbolt freed, which may still
// hold deleted records, are no longer in the store file. (The old file's
// blocks are released to the filesystem; what a disk keeps of released
// blocks is below what a file can promise.) Call it when no transaction
// is open, at start.
func (s *Store) Rewrite() error {
	tmp := s.path + ".rewrite"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("rewrite store: %w", err)
	}
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return fmt.Errorf("rewrite store: %w", err)
	}
	if err := bolt.Compact(dst, s.db, 4<<20); err != nil {
		dst.Close()
		os.Remove(tmp)
		return fmt.Errorf("rewrite store: %w", err)
	}
	if err := dst.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rewrite store: %w", err)
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("rewrite store: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("rewrite store: %w", err)
	}
	if err := fsx.SyncDir(filepath.Dir(s.path)); err != nil {
		return fmt.Errorf("rewrite store: %w", err)
	}
	db, err := bolt.Open(s.path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return fmt.Errorf("reopen store after rewrite: %w", err)
	}
	s.db = db
	return nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Uint64Key encodes n big-endian so keys sort numerically.
func Uint64Key(n uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, n)
	return b
}
