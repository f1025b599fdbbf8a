package firmware

import (
	"encoding/binary"

	bolt "go.etcd.io/bbolt"
)

// LinkUp tells the Manager the MQTT link has just connected: NeedDelay
// later, if a download is unfinished, OnNeed names its missing chunks
// (contract v2, firmware_need "on every connect"). It never blocks; call it
// from the link's connection hook.
func (m *Manager) LinkUp() {
	select {
	case m.linkUp <- struct{}{}:
	default: // one is already pending
	}
}

// Need returns the unfinished download's version and its missing chunk
// numbers, ascending, at most MaxNeed of them; ok is false when no download
// is unfinished.
func (m *Manager) Need() (version string, chunks []int, ok bool, err error) {
	err = m.st.View(func(tx *bolt.Tx) error {
		b, err := bucket(tx)
		if err != nil {
			return err
		}
		d, err := readDownload(b)
		if err != nil || d == nil || d.complete() {
			return err
		}
		version, ok = d.Manifest.Version, true
		chunks = missing(b.Bucket(bucketChunks), d.Manifest.Chunks, MaxNeed)
		return nil
	})
	return version, chunks, ok, err
}

// missing lists the chunk numbers below total that cb lacks, ascending, at
// most limit of them. It walks the received set once (keys are big-endian
// chunk numbers, so in order) and fills the gaps.
func missing(cb *bolt.Bucket, total, limit int) []int {
	out := []int{}
	next := 0
	if cb != nil {
		c := cb.Cursor()
		for k, _ := c.First(); k != nil && len(out) < limit; k, _ = c.Next() {
			if len(k) != 8 {
				continue
			}
			n := binary.BigEndian.Uint64(k)
			if n >= uint64(total) {
				continue
			}
			for ; next < int(n) && len(out) < limit; next++ {
				out = append(out, next)
			}
			next = int(n) + 1
		}
	}
	for ; next < total && len(out) < limit; next++ {
		out = append(out, next)
	}
	return out
}

// ask publishes firmware_need through OnNeed when a download is unfinished
// and records when, so the idle timer starts again.
func (m *Manager) ask(why string) {
	version, chunks, ok, err := m.Need()
	if err != nil {
		m.log.Error("firmware missing chunks", "err", err)
		return
	}
	if !ok || len(chunks) == 0 {
		return
	}
	m.actMu.Lock()
	m.askedAt = m.cfg.Now()
	m.actMu.Unlock()
	m.log.Info("firmware chunks asked for", "version", version, "missing", len(chunks), "first", chunks[0], "why", why)
	if m.cfg.OnNeed != nil {
		m.cfg.OnNeed(version, chunks)
	}
}

// askIfIdle asks again when the download in progress (id) has had no chunk
// and no ask for NeedAfter.
func (m *Manager) askIfIdle(id string) {
	last := m.lastActivity(id)
	m.actMu.Lock()
	if m.askedAt.After(last) {
		last = m.askedAt
	}
	m.actMu.Unlock()
	if m.cfg.Now().Sub(last) >= m.cfg.NeedAfter {
		m.ask("no chunk for " + m.cfg.NeedAfter.String())
	}
}
