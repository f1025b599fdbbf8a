package outbox

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"strconv"

	"github.com/aibo-privacy/aibo-privacyd/core/keys"
	"github.com/aibo-privacy/aibo-privacyd/internal/fsx"
)

// Large contents (a photo of up to 12 megapixels is several MiB) are
// streamed: written through a Stream, sealed segment by segment into their
// file, and read back for publishing a segment at a time, so neither the
// writer nor the sender ever holds one whole.
//
// A streamed content file is a sequence of segments, each sealed on its own
// (AES-256-GCM, keys.Seal) under the artifact's content key with the
// artifact id, the segment's index and whether it is the last in its
// additional data: a segment cannot be moved, dropped, or the file cut
// short without the read failing. Every segment holds segmentSize bytes
// but the last, which holds 1..segmentSize.
const segmentSize = 64 << 10

// segmentOverhead is what sealing adds to a segment (nonce and tag).
const segmentOverhead = 12 + 16

func segmentAAD(id string, i int64, last bool) []byte {
	tail := "/more"
	if last {
		tail = "/last"
	}
	return []byte("outbox-content/" + id + "/" + strconv.FormatInt(i, 10) + tail)
}

// Stream is the content of an artifact being written. Write seals it into
// a temporary file of the outbox's as it comes; Prepare (Artifact.Stream)
// finishes the file and takes it over. Discard throws it away.
type Stream struct {
	o    *Outbox
	id   string
	key  []byte
	f    *os.File
	buf  []byte // the segment being filled: sealed when the next byte comes, or as the last
	segs int64  // segments written
	size int64
	sum  hash.Hash
	err  error // the first failure; every later call returns it
	done bool  // finished or discarded
}

// NewStream starts the content of a new artifact (its id is Stream.ID).
func (o *Outbox) NewStream() (*Stream, error) {
	id := newID()
	f, err := os.CreateTemp(o.cfg.Dir, fsx.TempPrefix+id+"-*")
	if err != nil {
		return nil, fmt.Errorf("outbox: stream: %w", err)
	}
	return &Stream{o: o, id: id, key: keys.New(), f: f, buf: make([]byte, 0, segmentSize), sum: sha256.New()}, nil
}

// ID is the artifact id the content is sealed for.
func (s *Stream) ID() string { return s.id }

// Write seals p into the file, a segment at a time. It fails with
// ErrQueueFull once the content outgrows the queue.
func (s *Stream) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if s.done {
		return 0, errors.New("outbox: stream already finished")
	}
	if s.size+int64(len(p)) > s.o.cfg.MaxQueueBytes {
		s.err = fmt.Errorf("%w: content over %d bytes, the queue holds %d", ErrQueueFull, s.size+int64(len(p)), s.o.cfg.MaxQueueBytes)
		return 0, s.err
	}
	n := 0
	for len(p) > 0 {
		if len(s.buf) == segmentSize {
			if err := s.seal(false); err != nil {
				return n, err
			}
		}
		k := copy(s.buf[len(s.buf):segmentSize], p)
		s.buf = s.buf[:len(s.buf)+k]
		s.sum.Write(p[:k])
		s.size += int64(k)
		n += k
		p = p[k:]
	}
	return n, nil
}

func (s *Stream) seal(last bool) error {
	sealed, err := keys.Seal(s.key, s.buf, segmentAAD(s.id, s.segs, last))
	if err == nil {
		_, err = s.f.Write(sealed)
	}
	if err != nil {
		s.err = fmt.Errorf("outbox: stream: %w", err)
		return s.err
	}
	s.segs++
	s.buf = s.buf[:0]
	return nil
}

// finish seals the last segment and makes the file durable under name.
func (s *Stream) finish(name string) error {
	if s.err != nil {
		return s.err
	}
	if s.done {
		return errors.New("outbox: stream already finished")
	}
	if s.size == 0 {
		return fmt.Errorf("outbox: artifact %s: empty content", s.id)
	}
	if err := s.seal(true); err != nil {
		return err
	}
	err := s.f.Sync()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(s.f.Name(), s.o.path(name))
	}
	if err == nil {
		err = fsx.SyncDir(s.o.cfg.Dir)
	}
	if err != nil {
		s.err = fmt.Errorf("outbox: stream: %w", err)
		return s.err
	}
	s.done = true
	clear(s.key) // Prepare holds its own copy
	return nil
}

// Discard removes the temporary file of a stream not handed to Prepare (or
// whose Prepare failed). A crash leaves it to the next Open, which removes
// temporary files; its key was never stored, so it is unreadable anyway.
func (s *Stream) Discard() {
	if s == nil || s.done {
		return
	}
	s.done = true
	clear(s.key)
	s.f.Close()
	if err := os.Remove(s.f.Name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.o.log.Warn("outbox: remove discarded stream", "artifact_id", s.id, "err", err)
	}
}

// segmentReader reads a streamed content file back, opening one segment
// at a time.
type segmentReader struct {
	f    *os.File
	key  []byte
	id   string
	size int64 // content bytes, from the record
	i    int64 // next segment
	read int64 // content bytes returned
	buf  []byte
	pt   []byte // what is left of the opened segment
}

func (o *Outbox) openSegments(r *record, key []byte) (io.ReadCloser, error) {
	f, err := os.Open(o.path(r.File))
	if err != nil {
		return nil, err
	}
	return &segmentReader{f: f, key: key, id: r.ID, size: r.Size, buf: make([]byte, segmentSize+segmentOverhead)}, nil
}

func (r *segmentReader) Read(p []byte) (int, error) {
	if len(r.pt) == 0 {
		if r.read == r.size {
			return 0, io.EOF
		}
		n := min(segmentSize, r.size-r.read)
		sealed := r.buf[:n+segmentOverhead]
		if _, err := io.ReadFull(r.f, sealed); err != nil {
			return 0, fmt.Errorf("artifact %s segment %d: %w: %w", r.id, r.i, errUnreadable, err)
		}
		last := r.read+n == r.size
		pt, err := keys.Open(r.key, sealed, segmentAAD(r.id, r.i, last))
		if err != nil {
			return 0, fmt.Errorf("artifact %s segment %d: %w: %w", r.id, r.i, errUnreadable, err)
		}
		r.i++
		r.read += int64(len(pt))
		r.pt = pt
	}
	n := copy(p, r.pt)
	r.pt = r.pt[n:]
	return n, nil
}

func (r *segmentReader) Close() error {
	clear(r.key)
	return r.f.Close()
}
