package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/internal/retry"
	"github.com/aibo-privacy/aibo-privacyd/internal/strictjson"
	"github.com/aibo-privacy/aibo-privacyd/internal/textx"
)

// Publisher is the MQTT side the outbox needs; *link.Link is one. Topic
// suffixes are relative to aibo/{device_id}/.
type Publisher interface {
	Publish(ctx context.Context, topicSuffix string, payload []byte, retained bool) error
	Subscribe(topicSuffix string, h func(topic string, payload []byte))
}

const (
	ackTopic       = "artifacts/+/ack"
	maxAckBytes    = 4 << 10 // larger ack payloads are ignored unparsed
	maxReasonLog   = 200     // bytes of a nack reason that are logged
	publishTimeout = 30 * time.Second

	// Backoff while publishing fails (link down). The link reconnects on
	// its own; this only bounds how soon after a reconnect sending resumes.
	linkRetryMin = 250 * time.Millisecond
	linkRetryMax = 15 * time.Second

	ackRetry = time.Second // after a failed commit of acks
)

type ackMsg struct {
	ok     bool
	reason string
}

// wireAck is an ack's payload. sha256 (hex of the content, as the
// manifest gave it) is optional: with it, an ack counts only for that
// content (an addition to contract section 4; the v2 form without it is
// still accepted).
type wireAck struct {
	OK     *bool   `json:"ok"`
	Reason string  `json:"reason"`
	SHA256 *string `json:"sha256"`
}

type manifest struct {
	ArtifactID  string         `json:"artifact_id"`
	Kind        policy.Kind    `json:"kind"`
	ContentType string         `json:"content_type"`
	Size        int64          `json:"size"`
	SHA256      string         `json:"sha256"`
	Chunks      int            `json:"chunks"`
	CreatedAt   string         `json:"created_at"`
	SubjectID   string         `json:"subject_id,omitempty"`
	Attrs       map[string]any `json:"attrs"`
}

// Run subscribes to artifacts/+/ack on p, then publishes queued artifacts
// until ctx is done, and returns nil then. Call it once.
//
// Artifacts go one at a time in queue order: manifest, then chunks
// 0..n-1, each a QoS 1 publish. Up to Window sent artifacts may wait for
// their acks while the next ones are sent. An artifact without an ack
// AckTimeout after its last chunk is resent whole with the same id; after
// a restart everything still queued is resent. A not-ok ack schedules a
// resend with exponential backoff (RetryMin..RetryMax) and drops the
// artifact after MaxNacks. When a publish fails (link down) the artifact
// stays queued and sending resumes after a backoff, from its manifest.
func (o *Outbox) Run(ctx context.Context, p Publisher) error {
	if p == nil {
		return errors.New("outbox: nil publisher")
	}
	if !o.running.CompareAndSwap(false, true) {
		return errors.New("outbox: Run called more than once")
	}
	p.Subscribe(ackTopic, o.onAck)
	var wg sync.WaitGroup
	wg.Go(func() { o.ackLoop(ctx) })
	o.sendLoop(ctx, p)
	wg.Wait()
	return nil
}

// onAck runs on the publisher's delivery goroutine: parse, remember,
// signal; the ack loop does the slow part.
func (o *Outbox) onAck(topic string, payload []byte) {
	id, ok := ackID(topic)
	if !ok {
		o.log.Warn("outbox: ack on unexpected topic ignored", "topic", topic)
		return
	}
	if len(payload) > maxAckBytes {
		o.log.Warn("outbox: oversized ack ignored", "artifact_id", id, "size", len(payload))
		return
	}
	var w wireAck
	if err := strictjson.Unmarshal(payload, &w); err != nil || w.OK == nil {
		o.log.Warn("outbox: malformed ack ignored", "artifact_id", id, "size", len(payload))
		return
	}
	o.mu.Lock()
	it := o.items[id]
	if it == nil {
		o.mu.Unlock()
		o.log.Debug("outbox: ack for unknown artifact ignored", "artifact_id", id, "ok", *w.OK)
		return
	}
	if w.SHA256 != nil && !strings.EqualFold(*w.SHA256, it.meta.SHA256) {
		o.mu.Unlock()
		o.log.Warn("outbox: ack for other content ignored", "artifact_id", id, "ok", *w.OK)
		return
	}
	if *w.OK {
		switch {
		case it.published || (it.earlier && it.state == sending):
			it.acked = true // no more sends; frees its window slot
			o.acks[id] = ackMsg{ok: true}
		case it.state == sending:
			// The cloud may answer the last chunk before its PUBACK
			// reached us: it counts if this send completes.
			it.deferredOK = true
			o.mu.Unlock()
			return
		default:
			o.mu.Unlock()
			o.log.Warn("outbox: ok ack for an artifact not published yet ignored", "artifact_id", id)
			return
		}
	} else if prev, seen := o.acks[id]; !seen || !prev.ok {
		o.acks[id] = ackMsg{reason: w.Reason}
	}
	o.mu.Unlock()
	select {
	case o.ackCh <- struct{}{}:
	default:
	}
	if *w.OK {
		o.wake()
	}
}

// ackID extracts {aid} from .../artifacts/{aid}/ack.
func ackID(topic string) (string, bool) {
	rest, ok := strings.CutSuffix(topic, "/ack")
	if !ok {
		return "", false
	}
	i := strings.LastIndexByte(rest, '/')
	if i < 0 || (rest[:i] != "artifacts" && !strings.HasSuffix(rest[:i], "/artifacts")) {
		return "", false
	}
	id := rest[i+1:]
	return id, idRe.MatchString(id)
}

// ackLoop applies received acks: ok acks are deleted durably in one
// transaction per round, not-ok acks are counted (durably) and scheduled.
func (o *Outbox) ackLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-o.ackCh:
		}
		o.mu.Lock()
		acks := o.acks
		o.acks = map[string]ackMsg{}
		o.mu.Unlock()
		if len(acks) == 0 {
			continue
		}
		if err := o.applyAcks(acks); err != nil {
			o.log.Error("outbox: applying acks failed; retrying", "acks", len(acks), "err", err)
			o.mu.Lock()
			for id, a := range acks {
				if prev, seen := o.acks[id]; !seen || !prev.ok {
					o.acks[id] = a
				}
			}
			o.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-time.After(ackRetry):
			}
			select {
			case o.ackCh <- struct{}{}:
			default:
			}
		}
	}
}

func (o *Outbox) applyAcks(acks map[string]ackMsg) error {
	okIDs := map[string]bool{}
	for id, a := range acks {
		if a.ok {
			okIDs[id] = true
		}
	}
	if len(okIDs) > 0 {
		if _, err := o.removeIDs(okIDs, true, ""); err != nil {
			return err
		}
	}
	// Not-ok acks count only for an artifact sent completely and waiting
	// (one for an older copy arriving after a resend failed is moot).
	type nack struct {
		id, reason  string
		nacks, sent int
	}
	var nacks []nack
	now := time.Now()
	o.mu.Lock()
	for id, a := range acks {
		if a.ok {
			continue
		}
		it := o.items[id]
		if it != nil && it.state == sending {
			// The cloud may answer the last chunk before its PUBACK
			// reached us: decide when the send is over.
			it.deferredNack = &ackMsg{reason: a.reason}
			continue
		}
		if it == nil || it.acked || it.state != waiting {
			o.log.Debug("outbox: not-ok ack for an artifact not waiting for one ignored", "artifact_id", id)
			continue
		}
		it.meta.Nacks++
		o.stats.add(StatNacked, it.meta.Kind)
		it.state = idle
		it.notBefore = now.Add(retry.Jitter(backoff(o.cfg.RetryMin, o.cfg.RetryMax, it.meta.Nacks)))
		nacks = append(nacks, nack{id, a.reason, it.meta.Nacks, it.meta.Attempts})
	}
	o.mu.Unlock()
	if len(nacks) == 0 {
		return nil
	}
	err := o.st.Update(func(tx *bolt.Tx) error {
		b, err := buckets(tx)
		if err != nil {
			return err
		}
		for _, n := range nacks {
			r, err := o.readRecord(b.arts, n.id)
			if err != nil || r == nil {
				continue // removed meanwhile, or unreadable (Drop/Open handle it)
			}
			r.Nacks, r.Attempts = max(r.Nacks, n.nacks), max(r.Attempts, n.sent)
			if err := o.putRecord(b.arts, r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		o.log.Warn("outbox: persisting nack counts failed", "err", err) // counted in memory still
	}
	limit := map[string]bool{}
	for _, n := range nacks {
		o.log.Warn("artifact rejected by the cloud", "artifact_id", n.id, "nacks", n.nacks, "max_nacks", o.cfg.MaxNacks, "reason", textx.Cut(n.reason, maxReasonLog))
		if n.nacks >= o.cfg.MaxNacks {
			limit[n.id] = true
		}
	}
	if len(limit) > 0 {
		if _, err := o.removeIDs(limit, false, ReasonNackLimit); err != nil {
			return err
		}
	}
	o.wake()
	return nil
}

// sendLoop is the single sender.
func (o *Outbox) sendLoop(ctx context.Context, p Publisher) {
	var retryAt time.Time // link backoff
	linkDelay := linkRetryMin
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for ctx.Err() == nil {
		it, wakeAt := o.pick(time.Now(), retryAt)
		if it == nil {
			var tc <-chan time.Time
			if !wakeAt.IsZero() {
				timer.Reset(max(time.Until(wakeAt), time.Millisecond))
				tc = timer.C
			}
			select {
			case <-ctx.Done():
			case <-o.wakeCh:
			case <-tc:
			}
			timer.Stop() // Go >= 1.23: no stale tick after Stop
			continue
		}
		switch o.send(ctx, p, it) {
		case sentAll:
			linkDelay = linkRetryMin
			retryAt = time.Time{}
		case held:
			// Only this artifact waits; the ones behind it go on.
		case linkDown:
			d := retry.Jitter(linkDelay)
			retryAt = time.Now().Add(d)
			linkDelay = min(linkDelay*2, linkRetryMax)
		}
	}
}

// pick chooses the next artifact to send, marking it sending, or returns
// when to look again (zero: when woken).
func (o *Outbox) pick(now, retryAt time.Time) (*item, time.Time) {
	if now.Before(retryAt) {
		return nil, retryAt
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	var cand *item
	var next time.Time
	soonest := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	inflight := 0
	for _, it := range o.order {
		if it.acked {
			continue
		}
		if it.state == waiting && now.Before(it.deadline) {
			inflight++
			soonest(it.deadline)
			continue
		}
		if now.Before(it.notBefore) {
			soonest(it.notBefore)
			continue
		}
		if cand == nil {
			cand = it
		}
	}
	if cand == nil || inflight >= Window {
		return nil, next
	}
	cand.state = sending
	return cand, time.Time{}
}

type sendResult int

const (
	sentAll  sendResult = iota
	stopped             // removed, acked, refused by MaySend, or shutting down
	linkDown            // a publish failed
	held                // MaySend said not now: asked again after HoldRetry or Wake
	// ackedInFlight: an ok ack stopped a publish that had left; on the
	// last message, the cloud had it all (it may answer before the
	// broker's PUBACK reaches us: RabbitMQ delivers first), so the send
	// is complete.
	ackedInFlight
)

// HoldRetry is how long an artifact MaySend held waits before it is asked
// about again (Wake asks at once).
const HoldRetry = 5 * time.Second

// send publishes one artifact whole: manifest, then every chunk, asking
// the gate before each.
func (o *Outbox) send(ctx context.Context, p Publisher, it *item) sendResult {
	id := it.meta.ID
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	o.mu.Lock()
	it.cancel = cancel
	meta := it.meta.clone()
	o.mu.Unlock()
	res := o.sendParts(sctx, ctx, p, it, meta)
	o.mu.Lock()
	it.cancel = nil
	if res == sentAll && !it.gone.Load() {
		it.state = waiting
		it.deadline = time.Now().Add(o.cfg.AckTimeout)
		it.meta.Attempts++
		it.published = true
	} else if it.state == sending {
		it.state = idle
	}
	if it.deferredOK {
		it.deferredOK = false
		if it.published && !it.gone.Load() {
			it.acked = true
			o.acks[id] = ackMsg{ok: true}
			select {
			case o.ackCh <- struct{}{}:
			default:
			}
		}
	}
	it.held = res == held
	if it.held {
		it.notBefore = time.Now().Add(HoldRetry)
	}
	if n := it.deferredNack; n != nil {
		it.deferredNack = nil
		if _, seen := o.acks[id]; !seen {
			o.acks[id] = *n
		}
		select {
		case o.ackCh <- struct{}{}:
		default:
		}
	}
	o.mu.Unlock()
	if res == sentAll {
		o.stats.add(StatSent, meta.Kind)
		if meta.Attempts > 0 {
			o.stats.add(StatResent, meta.Kind)
		}
		o.log.Info("artifact sent", "artifact_id", id, "kind", meta.Kind, "size", meta.Size, "attempt", meta.Attempts+1)
	}
	return res
}

func (o *Outbox) sendParts(sctx, ctx context.Context, p Publisher, it *item, meta Meta) sendResult {
	id := meta.ID
	rec, content, err := o.load(id)
	if content != nil {
		defer content.Close()
	}
	switch {
	case err == nil && rec == nil:
		return stopped // erased meanwhile
	case err != nil:
		if it.gone.Load() {
			return stopped
		}
		if !errors.Is(err, errUnreadable) {
			o.log.Error("outbox: reading artifact failed; will retry", "artifact_id", id, "err", err)
			return linkDown // not the link, but the same "later"
		}
		o.log.Error("artifact unreadable; dropping it", "artifact_id", id, "kind", meta.Kind, "err", err)
		o.dropIDs(ReasonContentMissing, id)
		return stopped
	}
	cs := int64(o.cfg.ChunkSize)
	chunks := int((rec.Size + cs - 1) / cs)
	attrs := meta.Attrs
	if attrs == nil {
		attrs = map[string]any{}
	}
	man, err := json.Marshal(manifest{
		ArtifactID:  id,
		Kind:        meta.Kind,
		ContentType: meta.ContentType,
		Size:        meta.Size,
		SHA256:      meta.SHA256,
		Chunks:      chunks,
		CreatedAt:   meta.CreatedAt.UTC().Format(time.RFC3339Nano),
		SubjectID:   meta.SubjectID,
		Attrs:       attrs,
	})
	if err != nil {
		o.log.Error("artifact manifest unencodable; dropping it", "artifact_id", id, "err", err)
		o.dropIDs(ReasonContentMissing, id)
		return stopped
	}
	prefix := "artifacts/" + id + "/"
	for n := -1; n < chunks; n++ {
		suffix, payload := prefix+"meta", man
		if n >= 0 {
			suffix = prefix + "chunk/" + strconv.Itoa(n)
			// A buffer of its own per chunk: the MQTT client keeps an
			// unacknowledged message to send it again after a reconnect.
			payload = make([]byte, min(cs, rec.Size-int64(n)*cs))
			if _, err := io.ReadFull(content, payload); err != nil {
				switch {
				case it.gone.Load():
					return stopped
				case !errors.Is(err, errUnreadable):
					o.log.Error("outbox: reading artifact failed; will retry", "artifact_id", id, "err", err)
					return linkDown // not the link, but the same "later"
				}
				o.log.Error("artifact unreadable; dropping it", "artifact_id", id, "kind", meta.Kind, "err", err)
				o.dropIDs(ReasonContentMissing, id)
				return stopped
			}
		}
		switch r := o.publishOne(sctx, ctx, p, it, meta, suffix, payload); r {
		case sentAll:
		case ackedInFlight:
			if n == chunks-1 {
				return sentAll
			}
			return stopped
		case stopped:
			return stopped
		default:
			return r
		}
	}
	return sentAll
}

// publishOne publishes one message of it unless it is gone or the gate
// refuses. sendMu makes "check, then publish" atomic against remove: once
// remove returned, nothing more of the artifact is published.
func (o *Outbox) publishOne(sctx, ctx context.Context, p Publisher, it *item, meta Meta, suffix string, payload []byte) sendResult {
	it.sendMu.Lock()
	if it.gone.Load() || sctx.Err() != nil {
		it.sendMu.Unlock()
		return stopped
	}
	o.mu.Lock()
	acked := it.acked
	o.mu.Unlock()
	if acked {
		it.sendMu.Unlock()
		return stopped
	}
	verdict := policy.Send
	if o.cfg.MaySend != nil {
		verdict = o.cfg.MaySend(meta)
	}
	switch verdict {
	case policy.Refuse:
		it.sendMu.Unlock()
		o.log.Info("artifact refused right before publishing; dropping it", "artifact_id", meta.ID, "kind", meta.Kind, "topic_suffix", suffix)
		o.dropIDs(ReasonGate, meta.ID)
		return stopped
	case policy.Hold:
		it.sendMu.Unlock()
		o.log.Debug("artifact held until the policy allows it", "artifact_id", meta.ID, "kind", meta.Kind)
		return held // resent whole, with the same id
	}
	if it.gone.Load() || sctx.Err() != nil { // removed while the gate was deciding
		it.sendMu.Unlock()
		return stopped
	}
	pctx, cancel := context.WithTimeout(sctx, publishTimeout)
	err := p.Publish(pctx, suffix, payload, false)
	cancel()
	it.sendMu.Unlock()
	if err == nil {
		return sentAll
	}
	if ctx.Err() != nil {
		return stopped
	}
	if it.gone.Load() || sctx.Err() != nil { // removed, or cancelled by an ok ack
		o.mu.Lock()
		acked := it.acked
		o.mu.Unlock()
		if acked {
			return ackedInFlight
		}
		return stopped
	}
	o.log.Warn("outbox: publish failed; will retry", "topic_suffix", suffix, "size", len(payload), "err", err)
	return linkDown
}

func (o *Outbox) dropIDs(reason string, ids ...string) {
	set := map[string]bool{}
	for _, id := range ids {
		set[id] = true
	}
	if _, err := o.removeIDs(set, false, reason); err != nil {
		o.log.Error("outbox: drop failed", "reason", reason, "err", err)
	}
}

// backoff is lo*2^(n-1), at most hi.
func backoff(lo, hi time.Duration, n int) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}
