package vision

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	at := time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC)
	img := []byte{0xFF, 0xD8, 0, 1, 2, 3}
	if err := WriteRequest(&buf, &Request{ID: 7, Op: OpScore, Score: &Score{Image: img, TakenAt: at}}); err != nil {
		t.Fatal(err)
	}
	if err := WriteRequest(&buf, &Request{ID: 8, Op: OpPing}); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(buf.Bytes(), []byte("/9g")) {
		t.Error("image travelled as base64")
	}
	req, err := ReadRequest(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if req.ID != 7 || req.Op != OpScore || !bytes.Equal(req.Score.Image, img) || !req.Score.TakenAt.Equal(at) {
		t.Fatalf("got %+v", req)
	}
	req, err = ReadRequest(&buf)
	if err != nil || req.Op != OpPing || req.ID != 8 {
		t.Fatalf("got %+v, %v", req, err)
	}
	if _, err := ReadRequest(&buf); err != io.EOF {
		t.Fatalf("at the end: %v, want io.EOF", err)
	}
}

func frame(n, h uint32, body string) []byte {
	b := binary.BigEndian.AppendUint32(nil, n)
	b = binary.BigEndian.AppendUint32(b, h)
	return append(b, body...)
}

func TestReadFrameErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"length over limit", frame(MaxFrame+1, 2, "{}"), "size limit"},
		{"length too short", frame(2, 0, ""), "shorter"},
		{"header longer than frame", frame(6, 10, "{}"), "does not fit"},
		{"cut in the prefix", []byte{0, 0}, "unexpected EOF"},
		{"cut in the body", frame(100, 2, "{}"), "unexpected EOF"},
		{"bad json", frame(6, 2, "{x"), "decode request"},
		{"blob on ping", frame(20, 13, `{"op":"ping"}abc`), "carries no blob"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadRequest(bytes.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestWriteFrameTooLarge(t *testing.T) {
	err := WriteFrame(io.Discard, map[string]int{}, make([]byte, MaxFrame))
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err = %v", err)
	}
}

// A huge length prefix with no bytes behind it must not allocate the lot.
func TestReadFrameDoesNotTrustPrefix(t *testing.T) {
	in := frame(MaxFrame, 2, "{}")
	allocs := testing.AllocsPerRun(5, func() { ReadFrame(bytes.NewReader(in)) })
	if allocs > 20 {
		t.Fatalf("%v allocations", allocs)
	}
	_, _, err := ReadFrame(bytes.NewReader(in))
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v", err)
	}
}

func FuzzReadRequest(f *testing.F) {
	var buf bytes.Buffer
	WriteRequest(&buf, &Request{ID: 1, Op: OpScore, Score: &Score{Image: []byte("img")}})
	f.Add(buf.Bytes())
	f.Add(frame(6, 2, "{}"))
	f.Add([]byte{0xFF, 0xFF, 0xFF, 0xFF})
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := ReadRequest(bytes.NewReader(data))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := WriteRequest(&out, req); err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := ReadRequest(&out); err != nil {
			t.Fatalf("re-read: %v", err)
		}
	})
}

// countingReader counts what was read from it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// Issue 21: one answer made the daemon allocate 256 MiB. An answer's
// lengths are checked against what its request allows before a byte of
// its body is read: only the 8-byte prefix is consumed, nothing is
// allocated for the claim.
func TestP16_AnAnswerIsBoundedByItsRequestBeforeItIsRead(t *testing.T) {
	clean := &Request{Op: OpClean, Clean: &Clean{Width: 10, Height: 10, MaxBytes: 1000}}
	for _, tc := range []struct {
		name string
		req  *Request
		in   []byte
	}{
		{"a score answer of 64 MiB", &Request{Op: OpScore}, frame(MaxFrame, MaxFrame-4, "")},
		{"a score header over 64 KiB", &Request{Op: OpScore}, frame(100<<10, 100<<10-4, "")},
		{"a ping header over 4 KiB", &Request{Op: OpPing}, frame(5<<10, 5<<10-4, "")},
		{"a faces header over 1 MiB", &Request{Op: OpFaces}, frame(2<<20, 2<<20-4, "")},
		{"a blob on a faces answer", &Request{Op: OpFaces}, frame(1004, 2, "")},
		{"a clean photo over its bound", clean, frame(4+100+1001, 100, "")},
		{"a clean header over 4 KiB", clean, frame(8<<10, 8<<10-4, "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &countingReader{r: bytes.NewReader(append(tc.in, make([]byte, 1<<20)...))}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := ReadResponse(r, tc.req, io.Discard)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("err = %v, want ErrFrameTooLarge", err)
			}
			if r.n != 8 {
				t.Errorf("read %d bytes before refusing, want the 8 of the prefix", r.n)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<10 {
				t.Errorf("allocated %d bytes for the claim", grew)
			}
		})
	}
}

// A clean answer's photo streams to the writer in small steps and is
// counted; a blob where none belongs is refused before it is read.
func TestACleanAnswerStreamsAndOthersCarryNoBlob(t *testing.T) {
	var wire bytes.Buffer
	photo := bytes.Repeat([]byte("jpeg"), 100<<10)
	WriteResponse(&wire, &Response{ID: 7, Clean: &CleanResult{JPEG: photo, Width: 3, Height: 2}})
	var got bytes.Buffer
	resp, err := ReadResponse(&wire, &Request{Op: OpClean, Clean: &Clean{MaxBytes: int64(len(photo))}}, &got)
	if err != nil || resp.Clean.Bytes != int64(len(photo)) || !bytes.Equal(got.Bytes(), photo) || resp.Clean.Width != 3 {
		t.Fatalf("clean answer: %v, %+v, %d bytes", err, resp, got.Len())
	}
	wire.Reset()
	WriteFrame(&wire, &Response{ID: 8, Score: &ScoreResult{}}, []byte("smuggled"))
	if _, err := ReadResponse(&wire, &Request{Op: OpScore}, &got); err == nil {
		t.Fatal("a score answer carried a blob")
	}
}
