// Package vision supervises the vision worker (cmd/aibo-vision) and holds
// the request and answer types that the daemon and the worker share.
//
// It owns: the wire protocol between the two processes (length-prefixed
// frames over the worker's stdin and stdout), the Client that starts the
// worker on demand, times requests out, kills and restarts it when it
// crashes or hangs and stops it when idle, and Serve, the worker's side of
// the loop.
//
// It must never import OpenCV (gocv) or any package that does: the daemon
// links this package, and a C++ crash in image decoding must take down only
// the worker. deps_test.go keeps it that way. It never reads the store or the
// keys: the worker gets image bytes and returns numbers.
//
// # Wire format
//
// Every message is one frame:
//
//	uint32 n (big-endian)   length of what follows, at most MaxFrame
//	uint32 h (big-endian)   length of the JSON header, h <= n-4
//	h bytes                 JSON: a Request or a Response
//	n-4-h bytes             blob: the image bytes of a request, or the
//	                        re-encoded photo of a clean answer (not base64)
//
// The worker answers each request with exactly one Response carrying the
// same ID, in order; one request is in flight at a time. The request sets
// what its answer may weigh (Request.answerLimits): the daemon reads a
// frame's 8-byte prefix, checks both lengths against those bounds and
// only then reads the rest, the JSON into a buffer of exactly its size
// and a blob straight into the caller's writer in small steps. No answer
// of the worker's, however long it claims to be, makes the daemon hold it.
//
// # Adding a request
//
// A new operation (as Faces{Image} was: detection, landmarks, alignment and
// the descriptor, all inside the worker) needs: an Op constant, a
// request struct whose image travels as the blob (see Request.blob), a
// result field in Response, a field in Handlers, and a Client method that
// calls c.call. Old workers answer an unknown op with an error, never a
// crash.
package vision

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// ProtocolVersion changes when a frame's meaning changes incompatibly. The
// client refuses a worker whose Pong carries another version.
//
// Version 2: a face's Template is a learned descriptor (facerec/descriptor's
// encoding) of the model FacesResult.Model names, no longer an LBP template.
// Version 4: a clean request names the size of its answer (Width, Height,
// MaxBytes) and the re-encoded JPEG comes back as the frame's blob.
const ProtocolVersion = 4

// MaxFrame bounds a frame in either direction (64 MiB). A larger length
// prefix is a protocol error, never an allocation.
const MaxFrame = 64 << 20

// maxHeader bounds the JSON part of a frame.
const maxHeader = 1 << 20

// MaxImageBytes is the largest image a request can carry.
const MaxImageBytes = MaxFrame - maxHeader

// Op names an operation.
type Op string

// Operations.
const (
	OpPing     Op = "ping"
	OpScore    Op = "score"
	OpFaces    Op = "faces"
	OpValidate Op = "validate"
	OpClean    Op = "clean"
)

// Request is one message to the worker. Exactly the field named by Op is
// set (none for ping).
type Request struct {
	ID       uint64    `json:"id"`
	Op       Op        `json:"op"`
	Score    *Score    `json:"score,omitempty"`
	Faces    *Faces    `json:"faces,omitempty"`
	Validate *Validate `json:"validate,omitempty"`
	Clean    *Clean    `json:"clean,omitempty"`
}

// Validate asks the worker to decode an image completely: the daemon
// keeps photos as bytes and never decodes one itself, so a hostile file
// costs the worker's memory, never the daemon's.
type Validate struct {
	Image []byte `json:"-"` // the blob
}

// ValidateResult is what the decode found.
type ValidateResult struct {
	Format string `json:"format"` // jpeg or png
	Width  int    `json:"width"`
	Height int    `json:"height"`
}

// Clean asks the worker to re-encode a photo for upload: the EXIF
// orientation applied, the regions in Hide (in the upright photo's pixels,
// as Faces reports them) pixelated, scaled to exactly Width x Height, no
// metadata kept, at most MaxBytes (capture/clean.ForUpload).
type Clean struct {
	Image    []byte `json:"-"` // the blob
	Hide     []Box  `json:"hide,omitempty"`
	Width    int    `json:"width"`
	Height   int    `json:"height"`
	MaxBytes int64  `json:"max_bytes"`
}

// Box is a region of an image, in its pixels.
type Box struct {
	X int `json:"x"`
	Y int `json:"y"`
	W int `json:"w"`
	H int `json:"h"`
}

// CleanResult describes the re-encoded JPEG, which travels as the frame's
// blob. In the worker JPEG holds it; the client streams it to the writer
// its caller gave and fills Bytes.
type CleanResult struct {
	JPEG   []byte `json:"-"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
	Bytes  int64  `json:"bytes"`
}

// Faces asks for the faces of one image, each as a descriptor made from its
// landmark-aligned chip. The chip itself never leaves the worker.
type Faces struct {
	// Image holds the encoded image (JPEG or PNG); it travels as the blob.
	Image []byte `json:"-"`
	// Thorough searches a photo about to leave the device, where a
	// stranger's face that is missed goes out unblurred: faces down to
	// about 5% of the height (the frame at 0.75 and, in tiles, at 1.5) and
	// the faces the scorer counts, at 1–2 s a photo rather than a Patrol
	// frame's tens of milliseconds. Patrol frames leave it false.
	Thorough bool `json:"thorough,omitempty"`
	// BoxesOnly skips landmarks and descriptors: when nobody may be
	// recognised, every face is a stranger and only where it is matters.
	BoxesOnly bool `json:"boxes_only,omitempty"`
	// Enrollment searches as for a frame of an open enrollment window:
	// Patrol's search plus the frame at 0.75 of a 1280 px frame, so a
	// person is found from about 10% of the height (where the robot
	// stands, 2 m away), at about five times a Patrol frame's cost.
	// Workers that predate it ignore it and search as for Patrol.
	Enrollment bool `json:"enrollment,omitempty"`
}

// FacesResult lists the faces found.
type FacesResult struct {
	Faces  []FaceTemplate `json:"faces"`
	Width  int            `json:"width"`
	Height int            `json:"height"`
	// Model names what made the descriptors (net and alignment). The
	// daemon compares descriptors only with descriptors of the same model.
	Model string `json:"model"`
}

// FaceTemplate is one face: where it is and its descriptor (Template, in
// facerec/descriptor's encoding). A descriptor is biometric data: the
// daemon keeps it only for a consenting person and drops every other at
// once.
type FaceTemplate struct {
	X        int    `json:"x"`
	Y        int    `json:"y"`
	W        int    `json:"w"`
	H        int    `json:"h"`
	Template []byte `json:"template"`
}

// Score asks for the quality score of one photo.
type Score struct {
	// Image holds the encoded photo (JPEG or PNG). It travels as the frame's
	// blob.
	Image []byte `json:"-"`
	// TakenAt is when the photo was taken, in the home's time zone: the
	// time-of-day term uses its clock reading.
	TakenAt time.Time `json:"taken_at"`
}

// Response is the worker's answer to the request with the same ID. Error is
// set when the request failed (the image is then invalid for the caller),
// with Code saying why; otherwise the field matching the request's op is.
//
// Error is the worker's own text and the daemon never reads it: a worker
// that an image took over could write that image into it, and so into the
// daemon's log. The daemon keeps only Code, and only a Code from the list
// below (ErrorCodes); anything else is CodeInternal.
type Response struct {
	ID       uint64          `json:"id"`
	Error    string          `json:"error,omitempty"`
	Code     ErrorCode       `json:"code,omitempty"`
	Pong     *Pong           `json:"pong,omitempty"`
	Score    *ScoreResult    `json:"score,omitempty"`
	Faces    *FacesResult    `json:"faces,omitempty"`
	Validate *ValidateResult `json:"validate,omitempty"`
	Clean    *CleanResult    `json:"clean,omitempty"`
}

// ErrorCode says why the worker could not answer a request, from a fixed
// list: it is all of a failed answer that the daemon keeps.
type ErrorCode string

// The error codes. A worker that predates them sends none: CodeInternal.
const (
	// CodeNotAnImage: not a JPEG or PNG.
	CodeNotAnImage ErrorCode = "not_an_image"
	// CodeTooLarge: over the worker's pixel limit.
	CodeTooLarge ErrorCode = "too_large"
	// CodeDecodeFailed: a JPEG or PNG whose pixels do not decode (cut
	// short, broken, too small to judge).
	CodeDecodeFailed ErrorCode = "decode_failed"
	// CodeModelsUnusable: the worker's models did not load.
	CodeModelsUnusable ErrorCode = "models_unusable"
	// CodeUnsupported: the worker does not know the op.
	CodeUnsupported ErrorCode = "unsupported"
	// CodeInternal: anything else (a handler's bug or panic, an unknown
	// code, none at all).
	CodeInternal ErrorCode = "internal"
)

// ErrorCodes lists every code the daemon keeps.
var ErrorCodes = []ErrorCode{CodeNotAnImage, CodeTooLarge, CodeDecodeFailed, CodeModelsUnusable, CodeUnsupported, CodeInternal}

// known returns c when it is on the list, otherwise CodeInternal: a code
// is a word from the list, never the worker's text.
func (c ErrorCode) known() ErrorCode {
	for _, k := range ErrorCodes {
		if c == k {
			return c
		}
	}
	return CodeInternal
}

// CodedError is a handler's error with the code the worker answers it
// with. A handler's error without one is answered CodeInternal.
type CodedError struct {
	Code ErrorCode
	Err  error
}

func (e *CodedError) Error() string { return string(e.Code) + ": " + e.Err.Error() }
func (e *CodedError) Unwrap() error { return e.Err }

// WithCode gives err the code the worker answers it with (nil stays nil).
func WithCode(code ErrorCode, err error) error {
	if err == nil {
		return nil
	}
	return &CodedError{Code: code, Err: err}
}

// codeOf is the code a handler's error is answered with. The worker does
// not check it against the list: the daemon does (known), whatever
// answered.
func codeOf(err error) ErrorCode {
	var ce *CodedError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return CodeInternal
}

// Pong answers a ping.
type Pong struct {
	PID      int  `json:"pid"`
	Protocol int  `json:"protocol"`
	Ops      []Op `json:"ops"`
}

// ScoreResult is the worker's judgement of one photo.
type ScoreResult struct {
	// Score in [0, 1] under the default weights. The daemon recomputes it
	// from Breakdown with the owner's learned weights.
	Score float64 `json:"score"`
	// Breakdown holds the features behind the score, each in [0, 1]:
	// "faces", "face_size", "placement", "smile", "eyes_open", "sharpness",
	// "noise", "exposure", "time_of_day" (see capture/score/weights).
	Breakdown map[string]float64 `json:"breakdown"`
	Faces     []FaceBox          `json:"faces,omitempty"`
	// PHash is a 64-bit perceptual hash: near-duplicates differ in few bits.
	PHash  uint64 `json:"phash"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
}

// FaceBox is a face found in a photo, in pixels of the full image, with
// the probabilities that it smiles and that its eyes are open.
type FaceBox struct {
	X        int     `json:"x"`
	Y        int     `json:"y"`
	W        int     `json:"w"`
	H        int     `json:"h"`
	Smile    float64 `json:"smile"`
	EyesOpen float64 `json:"eyes_open"`
}

// blob returns the bytes that travel outside the JSON header.
func (r *Request) blob() []byte {
	switch {
	case r.Score != nil:
		return r.Score.Image
	case r.Faces != nil:
		return r.Faces.Image
	case r.Validate != nil:
		return r.Validate.Image
	case r.Clean != nil:
		return r.Clean.Image
	}
	return nil
}

// setBlob gives the blob back to the field that owns it.
func (r *Request) setBlob(b []byte) error {
	switch {
	case r.Op == OpScore && r.Score != nil:
		r.Score.Image = b
	case r.Op == OpFaces && r.Faces != nil:
		r.Faces.Image = b
	case r.Op == OpValidate && r.Validate != nil:
		r.Validate.Image = b
	case r.Op == OpClean && r.Clean != nil:
		r.Clean.Image = b
	case len(b) > 0:
		return fmt.Errorf("vision: op %q carries no blob, got %d bytes", r.Op, len(b))
	}
	return nil
}

// ErrFrameTooLarge is returned for a frame over MaxFrame, either way.
var ErrFrameTooLarge = errors.New("vision: frame over the size limit")

// WriteFrame writes header (as JSON) and blob as one frame.
func WriteFrame(w io.Writer, header any, blob []byte) error {
	h, err := json.Marshal(header)
	if err != nil {
		return fmt.Errorf("vision: encode header: %w", err)
	}
	if len(h) > maxHeader {
		return fmt.Errorf("%w: header of %d bytes (limit %d)", ErrFrameTooLarge, len(h), maxHeader)
	}
	n := 4 + len(h) + len(blob)
	if n > MaxFrame {
		return fmt.Errorf("%w: %d bytes (limit %d)", ErrFrameTooLarge, n, MaxFrame)
	}
	var pre [8]byte
	binary.BigEndian.PutUint32(pre[:4], uint32(n))
	binary.BigEndian.PutUint32(pre[4:], uint32(len(h)))
	// One Write per part; the pipe is not shared, so parts cannot interleave.
	for _, part := range [][]byte{pre[:], h, blob} {
		if len(part) == 0 {
			continue
		}
		if _, err := w.Write(part); err != nil {
			return fmt.Errorf("vision: write frame: %w", err)
		}
	}
	return nil
}

// readPrefix reads a frame's two lengths and checks them against the
// bounds (header, blob) before anything else is read: a length alone never
// makes the reader allocate or read. At a clean end of stream (no byte of
// a new frame) it returns io.EOF.
func readPrefix(r io.Reader, maxHead int, maxBlob int64) (head int, blob int64, err error) {
	var pre [8]byte
	if _, err := io.ReadFull(r, pre[:4]); err != nil {
		if err == io.EOF {
			return 0, 0, io.EOF
		}
		return 0, 0, fmt.Errorf("vision: read frame length: %w", err)
	}
	n := binary.BigEndian.Uint32(pre[:4])
	if n > MaxFrame {
		return 0, 0, fmt.Errorf("%w: length prefix says %d bytes (limit %d)", ErrFrameTooLarge, n, MaxFrame)
	}
	if n < 4 {
		return 0, 0, fmt.Errorf("vision: frame of %d bytes is shorter than its header length", n)
	}
	if _, err := io.ReadFull(r, pre[4:]); err != nil {
		return 0, 0, fmt.Errorf("vision: read frame: %w", noEOF(err))
	}
	h := binary.BigEndian.Uint32(pre[4:])
	if h > n-4 {
		return 0, 0, fmt.Errorf("vision: header length %d does not fit a frame of %d bytes", h, n)
	}
	head, blob = int(h), int64(n-4-h)
	if head > maxHead {
		return 0, 0, fmt.Errorf("%w: header of %d bytes (limit %d)", ErrFrameTooLarge, head, maxHead)
	}
	if blob > maxBlob {
		return 0, 0, fmt.Errorf("%w: blob of %d bytes (limit %d)", ErrFrameTooLarge, blob, maxBlob)
	}
	return head, blob, nil
}

// ReadFrame reads one frame of at most MaxFrame. At a clean end of stream
// (no byte of a new frame) it returns io.EOF; a frame cut short gives
// io.ErrUnexpectedEOF.
func ReadFrame(r io.Reader) (header, blob []byte, err error) {
	h, n, err := readPrefix(r, maxHeader, MaxFrame)
	if err != nil {
		return nil, nil, err
	}
	// The lengths are checked; the body is read in bounded steps, so a
	// prefix with nothing behind it costs one step, never the whole size.
	var buf bytes.Buffer
	if _, err := io.CopyN(&buf, r, int64(h)+n); err != nil {
		return nil, nil, fmt.Errorf("vision: read frame body: %w", noEOF(err))
	}
	body := buf.Bytes()
	return body[:h], body[h:], nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// WriteRequest sends one request.
func WriteRequest(w io.Writer, req *Request) error {
	return WriteFrame(w, req, req.blob())
}

// ReadRequest reads one request; io.EOF at a clean end of stream.
func ReadRequest(r io.Reader) (*Request, error) {
	h, blob, err := ReadFrame(r)
	if err != nil {
		return nil, err
	}
	req := new(Request)
	if err := json.Unmarshal(h, req); err != nil {
		return nil, fmt.Errorf("vision: decode request: %w", err)
	}
	if err := req.setBlob(blob); err != nil {
		return nil, err
	}
	return req, nil
}

// WriteResponse sends one response; a clean answer's JPEG is its blob.
func WriteResponse(w io.Writer, resp *Response) error {
	var blob []byte
	if resp.Clean != nil {
		blob = resp.Clean.JPEG
	}
	return WriteFrame(w, resp, blob)
}

// answerLimits bound the answer to a request: its JSON header and its
// blob (only a clean answer has one, at most the MaxBytes it asked for).
func (r *Request) answerLimits() (head int, blob int64) {
	switch r.Op {
	case OpFaces:
		return maxHeader, 0 // descriptors: about 700 bytes a face
	case OpScore:
		return 64 << 10, 0
	case OpClean:
		if r.Clean != nil {
			return 4 << 10, min(r.Clean.MaxBytes, MaxFrame)
		}
	}
	return 4 << 10, 0
}

// ReadResponse reads the answer to req: a frame whose lengths are checked
// against req's bounds before its body is read. A clean answer's blob is
// copied to blob in small steps (never held whole) and counted in
// Clean.Bytes; any other answer with a blob is refused unread. io.EOF at a
// clean end of stream.
func ReadResponse(r io.Reader, req *Request, blob io.Writer) (*Response, error) {
	maxHead, maxBlob := req.answerLimits()
	h, n, err := readPrefix(r, maxHead, maxBlob)
	if err != nil {
		return nil, err
	}
	head := make([]byte, h)
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, fmt.Errorf("vision: read frame header: %w", noEOF(err))
	}
	resp := new(Response)
	if err := json.Unmarshal(head, resp); err != nil {
		return nil, fmt.Errorf("vision: decode response: %s", jsonFault(err))
	}
	if n == 0 {
		if resp.Clean != nil && resp.Error == "" {
			return nil, errors.New("vision: clean answered without a photo")
		}
		return resp, nil
	}
	if resp.Clean == nil || blob == nil {
		return nil, fmt.Errorf("vision: response carries an unexpected blob of %d bytes", n)
	}
	got, err := io.CopyBuffer(sinkWriter{blob}, io.LimitReader(r, n), make([]byte, 32<<10))
	if err == nil && got < n {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, fmt.Errorf("vision: read clean photo: %w", err)
	}
	resp.Clean.Bytes = got
	return resp, nil
}

// SinkError is a failure of the writer a blob was streamed to (a full
// disk, or a photo that failed the caller's checks): the daemon's side,
// not the worker's.
type SinkError struct{ Err error }

func (e *SinkError) Error() string { return "vision: storing the answer: " + e.Err.Error() }
func (e *SinkError) Unwrap() error { return e.Err }

type sinkWriter struct{ w io.Writer }

func (s sinkWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if err != nil {
		err = &SinkError{err}
	}
	return n, err
}

// jsonFault describes why an answer's JSON did not decode without quoting
// any of it: encoding/json's messages quote the offending value (a
// number's digits, a character), which a worker taken over by an image
// could fill with that image's bytes.
func jsonFault(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("malformed JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("a value of the wrong type at byte %d", typ.Offset)
	}
	return "not a response"
}
