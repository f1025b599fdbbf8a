package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/keys"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
	"github.com/aibo-privacy/aibo-privacyd/sync/events"
	"github.com/aibo-privacy/aibo-privacyd/sync/link"
	"github.com/aibo-privacy/aibo-privacyd/sync/outbox"
)

// settings are what the cost cuts change; the rest is the daemon's.
type settings struct {
	KeepAlive  time.Duration `json:"keepalive"`
	ChunkSize  int           `json:"chunk_size"`
	AckTimeout time.Duration `json:"ack_timeout"`
	MaxQueue   int64         `json:"max_queue_bytes"`
	SendRate   int64         `json:"max_send_rate"`
}

// robot is one daemon's uplink, built the way agent.New builds it: the
// real link, outbox and event queue on a bbolt store and a keyring of its
// own, its own client id. Only the camera (seeded noise in JPEG markers)
// and the clock (a simulated day) are made up; what the daemon's
// composition adds on top (the reported state, notifications, the
// withdrawal's transaction) is played the way agent/ does it.
type robot struct {
	id     string
	dir    string
	broker string
	dial   func(context.Context, string) (net.Conn, error)
	s      settings
	runs   int // times run was called: every run after the first is a restart
	clock  *simClock
	ledger *ledger
	log    *slog.Logger
	meter  *meter

	st    *store.Store
	ring  *keys.Keyring // people.keys: a person's key in a slot
	data  *keys.Keyring // data.keys: a slot per artifact that is not person-linked
	box   *outbox.Outbox
	ev    *events.Queue
	link  *link.Link
	notes chan []byte

	subject   string // the household's one consenting person, a new one every day
	slot      uint32 // the keyring slot of their key
	withdrawn atomic.Bool

	stateDirty chan struct{}
	lastState  string

	mu        sync.Mutex
	admitted  int
	deleted   int
	uploaded  int
	conns     []connChange // every connect and disconnect
	commands  map[string]time.Time
	peakQueue int64
	photoSeq  int
}

type connChange struct {
	At time.Time
	Up bool
}

func openRobot(id, dir, broker string, dial func(context.Context, string) (net.Conn, error), s settings, clock *simClock, l *ledger, log *slog.Logger) (*robot, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	r := &robot{id: id, dir: dir, broker: broker, dial: dial, s: s, clock: clock, ledger: l, log: log.With("robot", id), meter: newMeter(id),
		notes: make(chan []byte, 256), stateDirty: make(chan struct{}, 1), commands: map[string]time.Time{}}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

// open opens what a daemon's start opens: the store, the keyring, the
// outbox (which reconciles its files with its records), the event queue
// and a link (which reads the backoff it kept).
func (r *robot) open() error {
	deviceKey, err := keys.LoadOrCreateDeviceKey(filepath.Join(r.dir, "device.key"))
	if err != nil {
		return err
	}
	if r.st, err = store.Open(filepath.Join(r.dir, "state.db")); err != nil {
		return err
	}
	if r.ring, err = keys.OpenKeyring(filepath.Join(r.dir, "people.keys")); err != nil {
		r.st.Close()
		return err
	}
	if r.data, err = keys.OpenKeyring(filepath.Join(r.dir, "data.keys")); err != nil {
		r.ring.Close()
		r.st.Close()
		return err
	}
	r.box, err = outbox.Open(r.st, outbox.Config{
		Dir:           filepath.Join(r.dir, "outbox"),
		DeviceKey:     deviceKey,
		Keyring:       r.ring,
		DataKeys:      r.data,
		MaxQueueBytes: r.s.MaxQueue,
		MaxSendRate:   r.s.SendRate,
		ChunkSize:     r.s.ChunkSize,
		AckTimeout:    r.s.AckTimeout,
		Now:           r.clock.Now,
		Logger:        r.log.With("component", "outbox"),
		MaySend: func(m outbox.Meta) policy.Verdict {
			if m.Kind == policy.KindSighting && r.withdrawn.Load() {
				return policy.Refuse
			}
			return policy.Send
		},
		OnAcked: func(m outbox.Meta) {
			if m.Kind == policy.KindPhoto {
				r.mu.Lock()
				r.uploaded++
				r.mu.Unlock()
			}
			r.stateChanged()
		},
		OnDropped: func(m outbox.Meta, reason string) {
			r.ledger.dropped(r.id, m.ID, reason)
			r.stateChanged()
		},
	})
	if err != nil {
		r.close()
		return err
	}
	r.ev = events.New(r.st, r.log.With("component", "events"))
	r.link, err = link.New(link.Config{
		DeviceID:    r.id,
		Broker:      r.broker,
		Logger:      r.log.With("component", "mqtt"),
		BackoffFile: filepath.Join(r.dir, "mqtt-backoff"),
		KeepAlive:   r.s.KeepAlive,
		Dial:        r.meter.dialer(r.dial),
	}, r.handle)
	if err != nil {
		r.close()
		return err
	}
	r.link.OnConnectionChange(func(up bool) {
		r.mu.Lock()
		r.conns = append(r.conns, connChange{time.Now(), up})
		r.mu.Unlock()
		if up {
			r.ev.Wake()
		}
	})
	return nil
}

func (r *robot) close() {
	if r.data != nil {
		r.data.Close()
		r.data = nil
	}
	if r.ring != nil {
		r.ring.Close()
		r.ring = nil
	}
	if r.st != nil {
		r.st.Close()
		r.st = nil
	}
}

// run runs the uplink until ctx ends, as agent.Daemon.Run runs it; run
// again, the robot restarts as a daemon does (everything opened again).
func (r *robot) run(ctx context.Context) {
	if r.runs++; r.runs > 1 {
		r.close()
		if err := r.open(); err != nil {
			r.log.Error("restart failed", "err", err)
			return
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { r.link.Run(ctx) })
	wg.Go(func() { r.box.Run(ctx, r.link) })
	wg.Go(func() { r.ev.Run(ctx, r.link) })
	wg.Go(func() { r.publishStates(ctx) })
	wg.Go(func() { r.runNotifier(ctx) })
	wg.Go(func() { r.watchQueue(ctx) })
	r.stateChanged()
	wg.Wait()
}

// watchQueue keeps the peak of the outbox's queued bytes.
func (r *robot) watchQueue(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, b := r.box.Summary()
		r.mu.Lock()
		r.peakQueue = max(r.peakQueue, b)
		r.mu.Unlock()
	}
}

// --- the daemon's reported state and notifications, as agent/ makes them

func (r *robot) stateChanged() {
	select {
	case r.stateDirty <- struct{}{}:
	default:
	}
}

// publishStates is agent's publishStates: the contract's reported state,
// republished on every change, at most every 50 ms.
func (r *robot) publishStates(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.stateDirty:
		}
		pending, bytes := r.box.Summary()
		subjects := 1
		if r.withdrawn.Load() {
			subjects = 0
		}
		r.mu.Lock()
		s := map[string]any{
			"device_id": r.id,
			"features": map[string]bool{"auto_photo": true, "patrol": true, "familiar_faces": true,
				"cloud_backup": false, "usage_analytics": false, "blur_unknown_faces": true},
			"policy_version": "2026-11",
			"region":         "US-CA",
			"photos_today": map[string]any{"day": r.clock.Now().Format(time.DateOnly), "admitted": r.admitted, "refused": 0,
				"over_cap": 0, "invalid": 0, "uploaded": r.uploaded, "deleted": r.deleted},
			"subjects":          subjects,
			"outbox":            map[string]any{"pending": pending, "bytes": bytes},
			"firmware":          map[string]any{"version": "1.0.0", "staged": ""},
			"paused_for_policy": "",
		}
		r.mu.Unlock()
		raw, _ := json.Marshal(s)
		if string(raw) != r.lastState {
			r.lastState = string(raw)
			s["updated_at"] = r.clock.Now().UTC().Format(time.RFC3339Nano)
			out, _ := json.Marshal(s)
			r.link.SetState(out)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func newEventID() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	return hex.EncodeToString(b[:])
}

// notify is agent's notify: published in order when the broker is
// reachable, lost (and logged) when it is not.
func (r *robot) notify(ev map[string]any) {
	ev["event_id"] = newEventID()
	ev["at"] = r.clock.Now().UTC().Format(time.RFC3339)
	raw, _ := json.Marshal(ev)
	select {
	case r.notes <- raw:
	default:
	}
}

func (r *robot) runNotifier(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case raw := <-r.notes:
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := r.link.PublishEvent(pctx, raw); err != nil && ctx.Err() == nil {
				r.log.Debug("event not published", "err", err)
			}
			cancel()
		}
	}
}

// --- the day: the camera, Patrol, the selection

// newDay starts a day: the counters of photos_today start again, and a
// person consents to recognition (their key in a keyring slot of their
// own), whose consent the cloud withdraws in the afternoon.
func (r *robot) newDay(day int) error {
	slot, _, err := r.ring.Alloc()
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.subject, r.slot = fmt.Sprintf("s%s-%d", r.id, day), slot
	r.admitted, r.deleted, r.uploaded = 0, 0, 0
	r.mu.Unlock()
	r.withdrawn.Store(false)
	r.stateChanged()
	return nil
}

// person is the day's person and their slot.
func (r *robot) person() (string, uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.subject, r.slot
}

// admit is the intake taking a photo in (the photo itself stays in the
// vault until the selection).
func (r *robot) admit() {
	r.mu.Lock()
	r.admitted++
	n := r.admitted
	r.mu.Unlock()
	r.stateChanged()
	if n == 30 {
		r.notify(map[string]any{"type": "cap_reached", "day": r.clock.Now().Format(time.DateOnly), "cap": 30})
	}
}

// camera makes photo n of this robot: about 300 KiB of seeded noise
// between JPEG markers (as incompressible as a JPEG), the same bytes for
// the same robot and number every time.
func camera(robotID string, n int) []byte {
	seed := sha256.Sum256([]byte(fmt.Sprintf("%s/photo/%d", robotID, n)))
	rng := rand.New(rand.NewChaCha8(seed))
	size := 280<<10 + rng.IntN(40<<10)
	b := make([]byte, size)
	for i := 0; i+8 <= size; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
	}
	copy(b, []byte{0xFF, 0xD8, 0xFF, 0xE0})
	copy(b[size-2:], []byte{0xFF, 0xD9})
	return b
}

// selectPhotos is the day's selection: keep 10, delete the rest, queue the
// kept ones for upload in one transaction (as capture.Selector does).
func (r *robot) selectPhotos() error {
	const keep = 10
	r.mu.Lock()
	admitted := r.admitted
	r.mu.Unlock()
	var prepared []*outbox.Prepared
	for range keep {
		r.mu.Lock()
		n := r.photoSeq
		r.photoSeq++
		r.mu.Unlock()
		content := camera(r.id, n)
		p, err := r.box.Prepare(outbox.Artifact{Kind: policy.KindPhoto, ContentType: "image/jpeg", Content: content,
			Attrs: map[string]any{"day": r.clock.Now().Format(time.DateOnly), "score": 0.5 + float64(n%50)/100}, CreatedAt: r.clock.Now()})
		if err != nil {
			return err
		}
		sum := sha256.Sum256(content)
		if p.Meta().SHA256 != hex.EncodeToString(sum[:]) {
			return errors.New("outbox: the queued photo's hash is not the camera's")
		}
		prepared = append(prepared, p)
	}
	var metas []outbox.Meta
	err := r.st.Update(func(tx *bolt.Tx) error {
		metas = metas[:0]
		for _, p := range prepared {
			m, err := r.box.EnqueueTx(tx, p)
			if err != nil {
				return err
			}
			metas = append(metas, m)
		}
		return nil
	})
	if err != nil {
		for _, p := range prepared {
			p.Discard()
		}
		return err
	}
	for _, m := range metas {
		r.ledger.queued(r.id, m)
	}
	r.mu.Lock()
	r.deleted += max(admitted-keep, 0)
	r.mu.Unlock()
	r.box.Wake()
	r.stateChanged()
	r.notify(map[string]any{"type": "selection_done", "day": r.clock.Now().Format(time.DateOnly), "kept": keep, "deleted": max(admitted-keep, 0)})
	return nil
}

// sighting is Patrol reporting the household's person: a person-linked
// artifact sealed by the person's keyring slot.
func (r *robot) sighting(ctx context.Context) error {
	if r.withdrawn.Load() {
		return nil // no consent, no recognition
	}
	subject, slot := r.person()
	body, _ := json.Marshal(map[string]any{"subject_id": subject, "time": r.clock.Now().UTC().Format(time.RFC3339), "confidence": 0.93})
	m, err := r.box.Enqueue(ctx, outbox.Artifact{Kind: policy.KindSighting, ContentType: "application/json",
		SubjectID: subject, Slot: &slot, Content: body, CreatedAt: r.clock.Now()})
	if err != nil {
		return err
	}
	r.ledger.queued(r.id, m)
	r.stateChanged()
	return nil
}

// --- commands from the cloud

type command struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
}

// handle answers a command. revoke_consent is applied the way the
// daemon's forget path applies it: the person's queued artifacts dropped
// and the erase request queued durably in one transaction, the keyring
// slot overwritten after it committed.
func (r *robot) handle(ctx context.Context, payload []byte) []byte {
	var c command
	if err := json.Unmarshal(payload, &c); err != nil || c.ID == "" {
		return []byte(`{"id":"","ok":false,"error":{"code":"bad_request","message":"not a command"}}`)
	}
	r.mu.Lock()
	_, seen := r.commands[c.ID]
	if !seen {
		r.commands[c.ID] = time.Now()
	}
	r.mu.Unlock()
	result := map[string]any{}
	if c.Type == "revoke_consent" && !seen {
		n, err := r.withdraw()
		if err != nil {
			r.log.Error("withdrawal failed", "err", err)
			return mustJSON(map[string]any{"id": c.ID, "ok": false, "error": map[string]string{"code": "internal", "message": "withdrawal failed"}})
		}
		subject, _ := r.person()
		result = map[string]any{"subject_id": subject, "revoked": []string{"face_recognition"}, "erased": map[string]int{"queued_dropped": n}}
	}
	return mustJSON(map[string]any{"id": c.ID, "ok": true, "result": result})
}

func (r *robot) withdraw() (int, error) {
	if r.withdrawn.Swap(true) {
		return 0, nil
	}
	subject, slot := r.person()
	var after func()
	var dropped []outbox.Meta
	err := r.st.Update(func(tx *bolt.Tx) error {
		var err error
		after, dropped, err = r.box.DropSlotTx(tx, slot, []policy.Kind{policy.KindSighting}, time.Time{}, outbox.ReasonGate)
		if err != nil {
			return err
		}
		ev := mustJSON(map[string]any{"type": "erase_request", "kinds": []string{"face_template", "sighting"},
			"subject_id": subject, "event_id": newEventID(), "at": r.clock.Now().UTC().Format(time.RFC3339)})
		return r.ev.Add(tx, ev)
	})
	if err != nil {
		r.withdrawn.Store(false)
		return 0, err
	}
	after()
	r.ev.Wake()
	if err := r.ring.Erase(slot); err != nil {
		r.log.Error("keyring erase failed", "err", err)
	}
	r.notify(map[string]any{"type": "consent_revoked", "subject_id": subject, "scopes": []string{"face_recognition"}})
	r.stateChanged()
	return len(dropped), nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// connected reports whether the link is up.
func (r *robot) connected() bool { return r.link.Connected() }

// firstUpAfter is when the link first connected at or after t.
func (r *robot) firstUpAfter(t time.Time) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		if c.Up && !c.At.Before(t) {
			return c.At, true
		}
	}
	return time.Time{}, false
}

// lostAfter reports whether the link went down at or after t.
func (r *robot) lostAfter(t time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		if !c.Up && !c.At.Before(t) {
			return true
		}
	}
	return false
}

func (r *robot) gotCommand(id string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.commands[id]
	return t, ok
}
