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
	// IDRetention is how long a handled id is remembered (default 30 days).
	IDRetention time.Duration
	// Authenticate, when set, turns the raw bytes into the command bytes to
	// parse (for the signed envelope) or refuses them with an id if one is
	// readable.
	Authenticate func(raw []byte, now time.Time) ([]byte, string, *Error)
	// Observe, when set, is told the type and outcome code ("ok") of every
	// answered command, for metrics.
	Observe func(typ, code string)
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
	At     time.Time       `json:"at"`
	Result json.RawMessage `json:"result"`
}

// Handle answers one raw command with the bytes to publish on cmd/result,
// or nil when no id could be read to address an answer.
func (d *Dispatcher) Handle(ctx context.Context, raw []byte) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.opt.Now()
	body := raw
	if d.opt.Authenticate != nil {
		var id string
		var e *Error
		body, id, e = d.opt.Authenticate(raw, now)
		if e != nil {
			return d.refuse(id, peekType(raw), e)
		}
	}
	cmd, id, e := Parse(body)
	if e != nil {
		return d.refuse(id, cmd.Type, e)
	}
	if prev, ok := d.lookup(cmd.ID); ok {
		d.opt.Logger.Info("command repeated", "id", cmd.ID, "type", cmd.Type)
		return prev
	}
	h, ok := d.handlers[cmd.Type]
	if !ok {
		return d.answer(cmd, Errorf(CodeUnknownType, "unknown command type %q", truncate(cmd.Type, 40)))
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
		res, err = d.record(tx, now, cmd.ID, body)
		return err
	})
	if err != nil {
		for _, f := range ex.undo {
			f()
		}
		var ce *Error
		if !errors.As(err, &ce) {
			d.opt.Logger.Error("command failed", "id", cmd.ID, "type", cmd.Type, "err", err)
			ce = Errorf(CodeInternal, "internal error")
		}
		return d.answer(cmd, ce)
	}
	for _, f := range ex.after {
		f()
	}
	d.observe(cmd.Type, "ok")
	d.opt.Logger.Info("command done", "id", cmd.ID, "type", cmd.Type, "effect", effect)
	return res
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
		_, err := d.recordRaw(tx, d.opt.Now(), cmd.ID, out)
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
	if d.opt.Observe == nil {
		return
	}
	if _, ok := d.handlers[typ]; !ok {
		typ = "other"
	}
	d.opt.Observe(typ, code)
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

func (d *Dispatcher) record(tx *bolt.Tx, now time.Time, id string, body any) ([]byte, error) {
	r := Result{ID: id, OK: true}
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
	return d.recordRaw(tx, now, id, raw)
}

func (d *Dispatcher) recordRaw(tx *bolt.Tx, now time.Time, id string, result []byte) ([]byte, error) {
	v, err := json.Marshal(stored{At: now, Result: result})
	if err != nil {
		return nil, err
	}
	if err := ids(tx).Put([]byte(id), v); err != nil {
		return nil, err
	}
	order := tx.Bucket(store.BucketCommands).Bucket(store.BucketCommandOrder)
	seq, _ := order.NextSequence()
	if err := order.Put(store.Uint64Key(seq), []byte(id)); err != nil {
		return nil, err
	}
	return result, d.prune(tx, now)
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
		if raw := idb.Get(v); raw != nil {
			var s stored
			if json.Unmarshal(raw, &s) == nil && now.Sub(s.At) > d.opt.IDRetention {
				old = true
			}
		}
		if count <= d.opt.MaxIDs && !old {
			return nil
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

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
