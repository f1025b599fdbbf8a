package firmware

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/audit"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
	"github.com/aibo-privacy/aibo-privacyd/internal/fsx"
	"github.com/aibo-privacy/aibo-privacyd/internal/semver"
)

// outcome is what a step found, reported through the callbacks once no
// lock is held.
type outcome struct {
	staged   *Manifest
	rejected *Rejection
}

func (m *Manager) report(o outcome) {
	if o.staged != nil {
		m.log.Info("firmware staged", "version", o.staged.Version, "size", o.staged.Size,
			"material_policy_change", o.staged.MaterialPolicyChange)
		if m.cfg.OnStaged != nil {
			m.cfg.OnStaged(*o.staged)
		}
	}
	if o.rejected != nil {
		m.log.Warn("firmware rejected", "version", o.rejected.Version, "reason", o.rejected.Reason, "detail", o.rejected.Detail)
		if m.cfg.OnRejected != nil {
			m.cfg.OnRejected(o.rejected.Version, o.rejected.Reason)
		}
	}
}

// ChunkTopic is the topic filter to subscribe to under aibo/{device_id}/.
// It is "firmware/#", not "firmware/+/chunk/+": a pre-release may contain
// "/", which makes the version more than one topic level.
func (m *Manager) ChunkTopic() string { return "firmware/#" }

// HandleChunkMessage takes a message from aibo/{id}/firmware/{version}/chunk/{n}
// (the full topic; the version may span several levels) and stores the
// chunk with Chunk, which reports staging and rejection through OnStaged
// and OnRejected. Errors are logged, never with the payload. Fits
// link.Link.Subscribe.
func (m *Manager) HandleChunkMessage(topic string, payload []byte) {
	parts := strings.Split(topic, "/")
	k := len(parts)
	// aibo/{device_id}/firmware/{version...}/chunk/{n}; a device id has no "/".
	if k < 6 || parts[2] != "firmware" || parts[k-2] != "chunk" {
		m.log.Warn("firmware chunk topic not understood", "topic", topic)
		return
	}
	version := strings.Join(parts[3:k-2], "/")
	n, err := strconv.Atoi(parts[k-1])
	if err != nil || n < 0 || strconv.Itoa(n) != parts[k-1] {
		m.log.Warn("firmware chunk number not understood", "topic", topic)
		return
	}
	_, err = m.Chunk(version, n, payload)
	var rej *Rejection
	switch {
	case err == nil, errors.As(err, &rej): // reported by Chunk
		m.mu.Lock()
		m.ignored = ""
		m.mu.Unlock()
	case errors.Is(err, ErrNoDownload):
		m.mu.Lock()
		first := m.ignored != version
		m.ignored = version
		m.mu.Unlock()
		if first {
			m.log.Info("firmware chunks ignored: no accepted offer for this version", "version", version)
		}
	case errors.Is(err, ErrChunkRange):
		m.log.Warn("firmware chunk refused: beyond the manifest", "version", version, "chunk", n, "size", len(payload))
	case errors.Is(err, ErrBadChunk):
		m.log.Warn("firmware chunk dropped: does not match chunk_sha256; it will be asked for again", "version", version, "chunk", n, "size", len(payload))
	default:
		m.log.Error("firmware chunk not stored", "version", version, "chunk", n, "size", len(payload), "err", err)
	}
}

// Chunk stores chunk n of version (raw bytes). Chunks are accepted in any
// order; a chunk already received is ignored (the first copy counts). The
// bytes are written at their offset in the download's file and fsynced
// before the chunk is recorded, so a restart resumes where it stopped.
//
// When the manifest carries chunk_sha256, a chunk whose sha256 (or length)
// differs is dropped with ErrBadChunk: nothing is written, the download
// goes on, and the chunk stays missing, so firmware_need asks for it again.
// Without chunk_sha256 the chunk size is the size of every chunk but the
// last; it is learned from the first chunk to arrive and must then fit the
// manifest exactly. A chunk whose length does not fit (so the chunks
// cannot add up to the manifest's size) rejects the download with reason
// size. A chunk number at or beyond the manifest's count is refused with
// ErrChunkRange and the download goes on. A version with no accepted offer
// gives ErrNoDownload.
//
// When the last missing chunk arrives the image is checked (size, sha256)
// and staged: staged is then its manifest. A rejection (digest, size, or a
// rollback found at staging) discards the download and its file and
// returns a *Rejection. Both are also reported through OnStaged and
// OnRejected, and audited.
func (m *Manager) Chunk(version string, n int, data []byte) (staged *Manifest, err error) {
	m.mu.Lock()
	out, err := m.chunk(version, n, data)
	m.mu.Unlock()
	m.report(out)
	if err == nil && out.rejected != nil {
		err = out.rejected
	}
	return out.staged, err
}

func (m *Manager) chunk(version string, n int, data []byte) (outcome, error) {
	var d *download
	var have bool
	var want []byte // chunk n's sha256 from the manifest, when it has them
	err := m.st.View(func(tx *bolt.Tx) error {
		b, err := bucket(tx)
		if err != nil {
			return err
		}
		if d, err = readDownload(b); err != nil || d == nil {
			return err
		}
		if cb := b.Bucket(bucketChunks); cb != nil && n >= 0 {
			have = cb.Get(store.Uint64Key(uint64(n))) != nil
		}
		if sums := b.Get(keyChunkSums); d.ChunkSums && n >= 0 && len(sums) >= 32*(n+1) {
			want = append([]byte(nil), sums[32*n:32*(n+1)]...)
		}
		return nil
	})
	if err != nil {
		return outcome{}, err
	}
	if d == nil || !sameTopicVersion(version, d.Manifest.Version) {
		return outcome{}, ErrNoDownload
	}
	if n < 0 || n >= d.Manifest.Chunks {
		return outcome{}, fmt.Errorf("%w: chunk %d of %d", ErrChunkRange, n, d.Manifest.Chunks)
	}
	if d.ChunkSums {
		if want == nil {
			return outcome{}, errors.New("firmware: chunk_sha256 missing from the store")
		}
		if sum := sha256.Sum256(data); !bytes.Equal(sum[:], want) {
			return outcome{}, fmt.Errorf("%w: chunk %d", ErrBadChunk, n)
		}
	}
	m.touch(d.ID) // a chunk of this download: the download is alive
	if have {
		if d.complete() { // staging failed before; try again
			return m.finish(*d)
		}
		return outcome{}, nil
	}
	size, ok := d.fit(n, int64(len(data)))
	if !ok {
		if d.ChunkSums {
			// Its hash matched, yet it does not fit: the manifest's own
			// hashes and sizes disagree. Nothing received can finish it.
			return m.reject(*d, ReasonSize, fmt.Sprintf("chunk %d matches chunk_sha256 but its %d bytes do not fit %d bytes in %d chunks",
				n, len(data), d.Manifest.Size, d.Manifest.Chunks))
		}
		return m.reject(*d, ReasonSize, fmt.Sprintf("chunk %d has %d bytes, which does not fit %d bytes in %d chunks",
			n, len(data), d.Manifest.Size, d.Manifest.Chunks))
	}
	path := m.part(*d)
	if err := writeAt(path, int64(n)*size, data); err != nil {
		return outcome{}, err
	}
	stale := false
	err = m.st.Update(func(tx *bolt.Tx) error {
		b, err := bucket(tx)
		if err != nil {
			return err
		}
		cur, err := readDownload(b)
		if err != nil {
			return err
		}
		if cur == nil || cur.ID != d.ID {
			stale = true // replaced or dropped since we looked
			return nil
		}
		cb := b.Bucket(bucketChunks)
		if cb == nil {
			return errors.New("firmware: chunk set missing")
		}
		if err := cb.Put(store.Uint64Key(uint64(n)), store.Uint64Key(uint64(len(data)))); err != nil {
			return err
		}
		cur.ChunkSize = size
		cur.Received++
		cur.Bytes += int64(len(data))
		d = cur
		return putJSON(b, keyDownload, cur)
	})
	if err != nil {
		return outcome{}, err
	}
	if stale {
		m.remove(path) // nobody else uses this file any more
		return outcome{}, ErrNoDownload
	}
	if d.complete() {
		return m.finish(*d)
	}
	return outcome{}, nil
}

// sameTopicVersion reports whether a chunk topic's version names the
// download's version. Build metadata is not in topics, and a broker that
// maps MQTT topics onto AMQP routing keys (RabbitMQ swaps "/" and ".")
// may deliver "1.2.0-rc.1" as "1/2/0-rc/1": "." and "/" count as one. Two
// versions differing only there cannot be told apart in a topic, and only
// one download runs at a time; its sha256 decides what is staged.
func sameTopicVersion(topic, version string) bool {
	if topic == version || topic == topicVersion(version) {
		return true
	}
	norm := func(s string) string { return strings.ReplaceAll(s, ".", "/") }
	return norm(topic) == norm(topicVersion(version))
}

// fit checks chunk n of length l against the manifest and the chunk size
// learned so far, and returns the chunk size.
func (d *download) fit(n int, l int64) (int64, bool) {
	man := d.Manifest
	if l <= 0 || l > MaxChunk {
		return 0, false
	}
	lo, hi, ok := chunkBounds(man.Size, man.Chunks)
	if !ok {
		return 0, false
	}
	last := n == man.Chunks-1
	c := d.ChunkSize
	if c == 0 {
		switch {
		case man.Chunks == 1:
			c = man.Size
		case !last:
			c = l
		default:
			rest := man.Size - l
			if rest <= 0 || rest%int64(man.Chunks-1) != 0 {
				return 0, false
			}
			c = rest / int64(man.Chunks-1)
		}
		if c < lo || c > hi {
			return 0, false
		}
	}
	want := c
	if last {
		want = man.Size - int64(man.Chunks-1)*c
	}
	return c, l == want
}

// writeAt puts data at off in path (created if needed) and makes it
// durable. Writes never go past the manifest's size (fit bounds them).
func writeAt(path string, off int64, data []byte) error {
	_, statErr := os.Stat(path)
	created := errors.Is(statErr, os.ErrNotExist)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("firmware: %w", err)
	}
	if _, err := f.WriteAt(data, off); err != nil {
		f.Close()
		return fmt.Errorf("firmware: write chunk: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("firmware: sync chunk: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("firmware: close chunk file: %w", err)
	}
	if created {
		return fsx.SyncDir(filepath.Dir(path))
	}
	return nil
}

// finish checks the complete image of d and stages it, or rejects it.
// Callers hold m.mu.
func (m *Manager) finish(d download) (outcome, error) {
	path := m.part(d)
	size, sum, err := hashFile(path)
	if errors.Is(err, os.ErrNotExist) {
		// A crash after the renames of stage but before its commit leaves
		// the image already in place: finish the record only.
		if ssize, ssum, err := hashFile(filepath.Join(m.cfg.Dir, StagedFile)); err == nil && ssize == d.Manifest.Size && ssum == d.Manifest.SHA256 {
			return m.stage(d, false)
		}
		return outcome{}, m.abandon(d, "image file missing")
	}
	if err != nil {
		return outcome{}, err
	}
	if size != d.Manifest.Size {
		return m.reject(d, ReasonSize, fmt.Sprintf("assembled %d bytes, manifest says %d", size, d.Manifest.Size))
	}
	if sum != d.Manifest.SHA256 {
		return m.reject(d, ReasonDigest, "sha256 of the assembled image differs from the manifest")
	}
	return m.stage(d, true)
}

func hashFile(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", fmt.Errorf("firmware: read image: %w", err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// stage records d's verified image as staged: the staged slot moves to the
// fallback slot, the anti-rollback mark rises, the download is dropped, the
// decision is audited and StagedTx runs, all in one transaction. The file
// renames (staged.img to fallback.img, the download file to staged.img)
// happen last inside it; should the commit then fail or the process die,
// finish finds the image in place and commits again (move false).
func (m *Manager) stage(d download, move bool) (outcome, error) {
	var out outcome
	now := m.cfg.Now()
	part := m.part(d)
	err := m.st.Update(func(tx *bolt.Tx) error {
		out = outcome{}
		b, err := bucket(tx)
		if err != nil {
			return err
		}
		cur, err := readDownload(b)
		if err != nil {
			return err
		}
		if cur == nil || cur.ID != d.ID {
			return nil // replaced by a newer offer meanwhile: that one wins
		}
		ver, err := semver.Parse(d.Manifest.Version)
		if err != nil {
			return err
		}
		highest, err := m.highest(b)
		if err != nil {
			return err
		}
		if semver.Compare(ver, highest) <= 0 { // cannot happen with one download at a time; checked anyway
			out.rejected = &Rejection{Version: d.Manifest.Version, Reason: ReasonRollback, Detail: "not above " + highest.String()}
			if err := dropDownload(b); err != nil {
				return err
			}
			return m.rejectedTx(tx, now, out.rejected)
		}
		prev, err := readSlot(b, keyStaged)
		if err != nil {
			return err
		}
		fields := map[string]string{"version": d.Manifest.Version, "sha256": d.Manifest.SHA256,
			"size": strconv.FormatInt(d.Manifest.Size, 10), "material_policy_change": strconv.FormatBool(d.Manifest.MaterialPolicyChange)}
		if d.Manifest.PolicyVersion != "" {
			fields["policy_version"] = d.Manifest.PolicyVersion
		}
		if prev != nil {
			if err := putJSON(b, keyFallback, prev); err != nil {
				return err
			}
			fields["fallback"] = prev.Manifest.Version
		}
		if err := putJSON(b, keyStaged, slot{Manifest: d.Manifest, StagedAt: now.UTC()}); err != nil {
			return err
		}
		if err := b.Put(keyHighest, []byte(d.Manifest.Version)); err != nil {
			return err
		}
		offer := append([]byte(nil), b.Get(keyOffer)...)
		if err := dropDownload(b); err != nil {
			return err
		}
		if _, err := audit.Append(tx, now, "firmware_staged", "", fields); err != nil {
			return err
		}
		if m.cfg.StagedTx != nil {
			if err := m.cfg.StagedTx(tx, now, d.Manifest); err != nil {
				return fmt.Errorf("firmware: staging hook: %w", err)
			}
		}
		if move {
			if err := m.moveIntoPlace(part); err != nil {
				return err
			}
		}
		if err := m.writeOffer(offer); err != nil {
			return err
		}
		if m.testHook != nil {
			if err := m.testHook(); err != nil {
				return err
			}
		}
		man := d.Manifest
		out.staged = &man
		return nil
	})
	if err != nil {
		return outcome{}, err
	}
	if out.rejected != nil {
		m.remove(part)
	}
	return out, nil
}

// moveIntoPlace renames staged.img to fallback.img and part to staged.img,
// then makes the renames durable. Re-running it after a crash is safe:
// while part exists the second rename has not happened, and staged.img
// still existing means the first has not either.
//
// Each image's offer file moves with it, before it: staged.offer.json is
// moved to fallback.offer.json only while staged.img is still there, so a
// crash between the two renames cannot give the fallback the new image's
// offer. The updater checks the image against its offer anyway.
func (m *Manager) moveIntoPlace(part string) error {
	staged := filepath.Join(m.cfg.Dir, StagedFile)
	if _, err := os.Stat(staged); err == nil {
		stagedOffer := filepath.Join(m.cfg.Dir, StagedOfferFile)
		if _, err := os.Stat(stagedOffer); err == nil {
			if err := os.Rename(stagedOffer, filepath.Join(m.cfg.Dir, FallbackOfferFile)); err != nil {
				return fmt.Errorf("firmware: keep fallback offer: %w", err)
			}
		} else {
			// An image staged before offers were kept: its fallback has none.
			m.remove(filepath.Join(m.cfg.Dir, FallbackOfferFile))
		}
		if err := os.Rename(staged, filepath.Join(m.cfg.Dir, FallbackFile)); err != nil {
			return fmt.Errorf("firmware: keep fallback: %w", err)
		}
	}
	if err := os.Rename(part, staged); err != nil {
		return fmt.Errorf("firmware: stage image: %w", err)
	}
	if err := fsx.SyncDir(m.cfg.Dir); err != nil {
		return err
	}
	return fsx.SyncDir(m.dlDir)
}

// writeOffer puts the staged image's offer beside it (temp, fsync, rename,
// directory fsync). A download recorded before offers were kept has none:
// any staged.offer.json left is removed, so no image carries another's.
func (m *Manager) writeOffer(offer []byte) error {
	path := filepath.Join(m.cfg.Dir, StagedOfferFile)
	if len(offer) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("firmware: remove stale offer: %w", err)
		}
		return nil
	}
	if err := fsx.WriteFileAtomic(path, offer, 0o600); err != nil {
		return fmt.Errorf("firmware: %w", err)
	}
	return nil
}

// rejectedTx audits a rejected download and runs the RejectedTx hook, in tx.
func (m *Manager) rejectedTx(tx *bolt.Tx, now time.Time, r *Rejection) error {
	if err := RecordRejection(tx, now, r); err != nil {
		return err
	}
	if m.cfg.RejectedTx == nil {
		return nil
	}
	return m.cfg.RejectedTx(tx, now, r.Version, r.Reason)
}

// reject drops d with reason, audits it and removes its file. Callers hold
// m.mu.
func (m *Manager) reject(d download, reason, detail string) (outcome, error) {
	r := &Rejection{Version: d.Manifest.Version, Reason: reason, Detail: detail}
	done := false
	err := m.st.Update(func(tx *bolt.Tx) error {
		cur, err := dropIfCurrent(tx, d)
		done = cur != nil
		if err != nil || cur == nil {
			return err
		}
		return m.rejectedTx(tx, m.cfg.Now(), r)
	})
	if err != nil {
		return outcome{}, err
	}
	m.remove(m.part(d))
	if !done {
		return outcome{}, ErrNoDownload
	}
	return outcome{rejected: r}, nil
}

// dropIfCurrent removes the download record inside tx if it is still d,
// returning it (nil when another download replaced it meanwhile).
func dropIfCurrent(tx *bolt.Tx, d download) (*download, error) {
	b, err := bucket(tx)
	if err != nil {
		return nil, err
	}
	cur, err := readDownload(b)
	if err != nil || cur == nil || cur.ID != d.ID {
		return nil, err
	}
	return cur, dropDownload(b)
}

// abandon drops d without a verdict on the image (idle, file lost), audits
// it and removes its file. Callers hold m.mu.
func (m *Manager) abandon(d download, why string) error {
	err := m.st.Update(func(tx *bolt.Tx) error {
		cur, err := dropIfCurrent(tx, d)
		if err != nil || cur == nil {
			return err
		}
		_, err = audit.Append(tx, m.cfg.Now(), "firmware_abandoned", "", map[string]string{"version": d.Manifest.Version,
			"reason": why, "received": strconv.Itoa(cur.Received), "chunks": strconv.Itoa(cur.Manifest.Chunks)})
		return err
	})
	if err != nil {
		return err
	}
	m.remove(m.part(d))
	m.log.Warn("firmware download abandoned", "version", d.Manifest.Version, "reason", why, "received", d.Received, "chunks", d.Manifest.Chunks)
	return nil
}

// Run reports what New found, then until ctx ends abandons a download idle
// for longer than DownloadTimeout (its file removed, the abandonment
// audited), retries the staging of a complete one, and asks for missing
// chunks (OnNeed) NeedDelay after each LinkUp and after NeedAfter without
// a chunk. It returns nil.
func (m *Manager) Run(ctx context.Context) error {
	m.pendMu.Lock()
	pending := m.pending
	m.pending = nil
	m.pendMu.Unlock()
	for _, o := range pending {
		m.report(o)
	}
	t := time.NewTicker(m.tick)
	defer t.Stop()
	connected := time.NewTimer(time.Hour)
	connected.Stop()
	defer connected.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-m.linkUp:
			connected.Reset(m.cfg.NeedDelay)
		case <-connected.C:
			m.ask("connected")
		case <-t.C:
			m.sweep()
		}
	}
}

// sweep is one round of Run.
func (m *Manager) sweep() {
	m.mu.Lock()
	out, id, err := m.sweepLocked()
	m.mu.Unlock()
	if err != nil {
		m.log.Error("firmware sweep", "err", err)
	}
	m.report(out)
	if id != "" {
		m.askIfIdle(id)
	}
}

// sweepLocked finishes or abandons the download in progress; it returns
// the id of one that is still unfinished.
func (m *Manager) sweepLocked() (outcome, string, error) {
	var d *download
	err := m.st.View(func(tx *bolt.Tx) error {
		b, err := bucket(tx)
		if err != nil {
			return err
		}
		d, err = readDownload(b)
		return err
	})
	if err != nil || d == nil {
		return outcome{}, "", err
	}
	if d.complete() {
		out, err := m.finish(*d)
		return out, "", err
	}
	if idle := m.cfg.Now().Sub(m.lastActivity(d.ID)); idle > m.cfg.DownloadTimeout {
		return outcome{}, "", m.abandon(*d, "idle for "+idle.Round(time.Second).String())
	}
	return outcome{}, d.ID, nil
}

func randomID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("firmware: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
