package vision

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
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
