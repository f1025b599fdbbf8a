package command

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/store"
	"github.com/aibo-privacy/aibo-privacyd/internal/textx"
)

// Exec is what a handler works with: the transaction its effect is written
// in (the same one that records the command id), the time, and a way to act
// after the commit (delete files, publish events) once the effect is durable.
type Exec struct {
	Tx    *bolt.Tx
	Now   time.Time
	Cmd   Command
	after []func()
	undo  []func()
}

// OnCommit runs f once the transaction has committed; never on rollback.
func (e *Exec) OnCommit(f func()) { e.after = append(e.after, f) }

// OnRefusal runs f once a refused command's transaction has rolled back
// (to record or report the refusal itself).
func (e *Exec) OnRefusal(f func()) { e.undo = append(e.undo, f) }

// Handler carries out one command type. It returns the result body, or an
// error: an *Error is answered as is, anything else as internal. On error the
// transaction rolls back, so a refused command has no effect.
type Handler func(ctx context.Context, e *Exec) (any, error)

// Options tune the dispatcher.
type Options struct {
	Now    func() time.Time
	Logger *slog.Logger
	// MaxIDs bounds how many command ids are remembered (default 10,000).
	MaxIDs int
	// IDRetention is how long a handled id is remembered (default 30 days),
	// counted from the later of its arrival and its issued_at. A repeat of
	// a remembered id gets the stored result. A withdrawal whose id was
	// forgotten is applied again if it comes again, which the per-setting
	// order makes harmless (see Exec.Claim); any other signed command is
	// expired by then (MaxSkew, and the floor of forgotten ids).
	IDRetention time.Duration
	// Authenticate, when set, turns the raw bytes into the command bytes to
	// parse (for the signed envelope) or refuses them with an id if one is
	// readable. A body it marks Signed must name DeviceID.
	Authenticate func(raw []byte, now time.Time) (Verified, string, *Error)
	// DeviceID is this device's id, which a signed body must carry.
	DeviceID string
	// OnAnswered, when set, is told the type and outcome code ("ok") of
	// every answered command once its answer is recorded, for metrics.
	OnAnswered func(typ, code string)
}

// Dispatcher runs commands one at a time.
type Dispatcher struct {
	st       *store.Store
	opt      Options
	handlers map[string]Handler
	mu       sync.Mutex // one command at a time: results follow arrival order
}

// NewDispatcher returns a dispatcher recording ids in st.
func NewDispatcher(st *store.Store, opt Options) *Dispatcher {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.MaxIDs <= 0 {
		opt.MaxIDs = 10000
	}
	if opt.IDRetention <= 0 {
		opt.IDRetention = 30 * 24 * time.Hour
	}
	return &Dispatcher{st: st, opt: opt, handlers: map[string]Handler{}}
}

// Register sets the handler of a command type.
func (d *Dispatcher) Register(typ string, h Handler) { d.handlers[typ] = h }

type stored struct {
	At time.Time `json:"at"`
	// IssuedAt is set for signed commands only: the id is kept at least
	// until IssuedAt + IDRetention, when the command's window closes.
	IssuedAt *time.Time `json:"issued_at,omitempty"`
	// Withdrawal marks a signed withdrawal (Withdraws): forgetting its id
	// raises no floor, since a withdrawal is accepted whatever its age.
	Withdrawal bool            `json:"withdrawal,omitempty"`
	Result     json.RawMessage `json:"result"`
}

// keepFrom is when a remembered id's retention starts.
func (s stored) keepFrom() time.Time {
	if s.IssuedAt != nil && s.IssuedAt.After(s.At) {
		return *s.IssuedAt
	}
	return s.At
}

// floorKey, in BucketCommands, holds the latest issued_at (RFC 3339) of a
// signed command other than a withdrawal whose id was forgotten: such
// commands issued at or before it are refused as expired, since a replay
// of the forgotten one could no longer be recognised. Withdrawals ignore
// it: one the broker kept while the robot was off, or whose id a clock
// moved forward pushed out, must still be applied, and the per-setting
// order makes a replayed one change nothing the owner chose since.
var floorKey = []byte("forgotten_issued_at")

// Handle answers one raw command with the bytes to publish on cmd/result,
// or nil when no id could be read to address an answer.
func (d *Dispatcher) Handle(ctx context.Context, raw []byte) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.opt.Now()
	v := Verified{Body: raw}
	if d.opt.Authenticate != nil {
		var id string
		var e *Error
		v, id, e = d.opt.Authenticate(raw, now)
		if e != nil {
			return d.refuse(id, peekType(raw), e)
		}
	}
	cmd, id, e := Parse(v.Body)
	if e != nil {
		return d.refuse(id, cmd.Type, e)
	}
	if v.Signed {
		cmd.Signed = true
		if e := checkSigned(cmd, d.opt.DeviceID, now, d.floor()); e != nil {
			return d.refuse(cmd.ID, cmd.Type, e)
		}
	}
	if prev, ok := d.lookup(cmd.ID); ok {
		d.opt.Logger.Info("command repeated", "id", cmd.ID, "type", logType(cmd.Type))
		return prev
	}
	h, ok := d.handlers[cmd.Type]
	if !ok {
		return d.answer(cmd, Errorf(CodeUnknownType, "unknown command type %q", textx.Cut(cmd.Type, 40)))
	}
	ex := &Exec{Now: now, Cmd: cmd}
	var res []byte
	var effect any // the handler's result, logged: ids, counts and flags, never personal data
	err := d.st.Update(func(tx *bolt.Tx) error {
		ex.Tx = tx
		ex.after, ex.undo = nil, nil
		body, herr := h(ctx, ex)
		if herr != nil {
			return herr
		}
		effect = body
		var err error
		res, err = d.record(tx, now, cmd, body)
		return err
	})
	if err != nil {
		for _, f := range ex.undo {
			f()
		}
		var ce *Error
		if !errors.As(err, &ce) {
			d.opt.Logger.Error("command failed", "id", cmd.ID, "type", logType(cmd.Type), "err", err)
			ce = Errorf(CodeInternal, "internal error")
		}
		return d.answer(cmd, ce)
	}
	for _, f := range ex.after {
		f()
	}
	d.observe(cmd.Type, "ok")
	d.opt.Logger.Info("command done", "id", cmd.ID, "type", logType(cmd.Type), "effect", effect)
	return res
}

// HandleOversized answers a command too large for the link to queue, of
// which only a prefix was kept: bad_request, addressed to the id a bounded
// scan of the prefix reads (nothing when none), never recorded.
func (d *Dispatcher) HandleOversized(_ context.Context, prefix []byte, size int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.refuse(PeekID(prefix), "", Errorf(CodeBadRequest, "command of %d bytes exceeds %d", size, MaxEnvelope))
}

// answer records an error result (so a repeat gets the same answer) unless
// the failure was transient.
func (d *Dispatcher) answer(cmd Command, e *Error) []byte {
	d.observe(cmd.Type, e.Code)
	logRefusal(d.opt.Logger, slog.LevelInfo, cmd.ID, cmd.Type, e)
	out := ErrorResult(cmd.ID, e)
	if e.Code == CodeInternal || e.Code == CodeBusy {
		return out
	}
	err := d.st.Update(func(tx *bolt.Tx) error {
		_, err := d.recordRaw(tx, d.opt.Now(), cmd, out)
		return err
	})
	if err != nil {
		d.opt.Logger.Error("record command result", "id", cmd.ID, "err", err)
	}
	return out
}

// refuse answers a command that never got as far as its handler; nothing is
// recorded, so a forged or garbled copy cannot use up a genuine id.
func (d *Dispatcher) refuse(id, typ string, e *Error) []byte {
	d.observe(typ, e.Code)
	if id == "" {
		d.opt.Logger.Warn("command dropped: no id to answer", "type", typ, "code", e.Code, "reason", e.Message)
		return nil
	}
	logRefusal(d.opt.Logger, slog.LevelWarn, id, typ, e)
	return ErrorResult(id, e)
}

func (d *Dispatcher) observe(typ, code string) {
	if d.opt.OnAnswered == nil {
		return
	}
	if _, ok := d.handlers[typ]; !ok {
		typ = "other"
	}
	d.opt.OnAnswered(typ, code)
}

func (d *Dispatcher) lookup(id string) ([]byte, bool) {
	var out []byte
	_ = d.st.View(func(tx *bolt.Tx) error {
		raw := ids(tx).Get([]byte(id))
		if raw == nil {
			return nil
		}
		var s stored
		if json.Unmarshal(raw, &s) == nil {
			out = s.Result
		}
		return nil
	})
	return out, out != nil
}

func (d *Dispatcher) record(tx *bolt.Tx, now time.Time, cmd Command, body any) ([]byte, error) {
	r := Result{ID: cmd.ID, OK: true}
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r.Result = b
	}
	raw, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	return d.recordRaw(tx, now, cmd, raw)
}

func (d *Dispatcher) recordRaw(tx *bolt.Tx, now time.Time, cmd Command, result []byte) ([]byte, error) {
	s := stored{At: now, Result: result}
	if cmd.Signed && !cmd.IssuedAt.IsZero() {
		at := cmd.IssuedAt.UTC()
		s.IssuedAt, s.Withdrawal = &at, Withdraws(cmd)
	}
	v, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	if err := ids(tx).Put([]byte(cmd.ID), v); err != nil {
		return nil, err
	}
	order := tx.Bucket(store.BucketCommands).Bucket(store.BucketCommandOrder)
	seq, _ := order.NextSequence()
	if err := order.Put(store.Uint64Key(seq), []byte(cmd.ID)); err != nil {
		return nil, err
	}
	return result, d.prune(tx, now)
}

// floor is the issued_at at or before which signed commands are refused
// (see floorKey); zero when no signed id was ever forgotten.
func (d *Dispatcher) floor() time.Time {
	var f time.Time
	_ = d.st.View(func(tx *bolt.Tx) error {
		f = readFloor(tx)
		return nil
	})
	return f
}

func readFloor(tx *bolt.Tx) time.Time {
	raw := tx.Bucket(store.BucketCommands).Get(floorKey)
	if raw == nil {
		return time.Time{}
	}
	f, err := time.Parse(time.RFC3339Nano, string(raw))
	if err != nil {
		return time.Time{}
	}
	return f
}

// prune forgets the oldest ids beyond MaxIDs or past IDRetention, a bounded
// number per call so no transaction grows large.
func (d *Dispatcher) prune(tx *bolt.Tx, now time.Time) error {
	order := tx.Bucket(store.BucketCommands).Bucket(store.BucketCommandOrder)
	idb := ids(tx)
	c := order.Cursor()
	last, _ := c.Last()
	for k, v := c.First(); k != nil; k, v = c.First() {
		// Sequences are contiguous: only the oldest are ever removed.
		count := int(binary.BigEndian.Uint64(last) - binary.BigEndian.Uint64(k) + 1)
		old := false
		var s stored
		if raw := idb.Get(v); raw != nil && json.Unmarshal(raw, &s) == nil && now.Sub(s.keepFrom()) > d.opt.IDRetention {
			old = true
		}
		if count <= d.opt.MaxIDs && !old {
			return nil
		}
		// A signed command forgotten now can no longer be recognised if it
		// comes again: raise the floor so that it would be expired. Not for
		// a withdrawal (see floorKey).
		if s.IssuedAt != nil && !s.Withdrawal && s.IssuedAt.After(readFloor(tx)) {
			if err := tx.Bucket(store.BucketCommands).Put(floorKey, []byte(s.IssuedAt.UTC().Format(time.RFC3339Nano))); err != nil {
				return err
			}
		}
		if err := idb.Delete(v); err != nil {
			return err
		}
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

func ids(tx *bolt.Tx) *bolt.Bucket {
	return tx.Bucket(store.BucketCommands).Bucket(store.BucketCommandIDs)
}
