package vision

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

// Handlers are the worker's implementations of the operations. A nil field
// answers its op with an "unsupported" error. Ping is answered by Serve.
type Handlers struct {
	Score    func(ctx context.Context, req Score) (ScoreResult, error)
	Faces    func(ctx context.Context, req Faces) (FacesResult, error)
	Validate func(ctx context.Context, req Validate) (ValidateResult, error)
	Clean    func(ctx context.Context, req Clean) (CleanResult, error)
}

func (h Handlers) ops() []Op {
	ops := []Op{OpPing}
	if h.Score != nil {
		ops = append(ops, OpScore)
	}
	if h.Faces != nil {
		ops = append(ops, OpFaces)
	}
	if h.Validate != nil {
		ops = append(ops, OpValidate)
	}
	if h.Clean != nil {
		ops = append(ops, OpClean)
	}
	return ops
}

// Serve is the worker's loop: it reads requests from r and writes one
// response for each to w, until r ends (nil: the daemon closed the pipe, the
// worker should exit) or ctx is done. A frame it cannot read is an error:
// the stream can no longer be trusted. A handler's error or panic becomes
// the response's Error and Code (a CodedError's, else CodeInternal); the
// loop goes on.
func Serve(ctx context.Context, r io.Reader, w io.Writer, h Handlers) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		req, err := ReadRequest(r)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		resp := h.handle(ctx, req)
		if err := WriteResponse(w, resp); err != nil {
			return err
		}
	}
}

func (h Handlers) handle(ctx context.Context, req *Request) (resp *Response) {
	resp = &Response{ID: req.ID}
	defer func() {
		if p := recover(); p != nil {
			resp = &Response{ID: req.ID, Error: fmt.Sprintf("%s: panic: %v", req.Op, p), Code: CodeInternal}
		}
	}()
	switch {
	case req.Op == OpPing:
		resp.Pong = &Pong{PID: os.Getpid(), Protocol: ProtocolVersion, Ops: h.ops()}
	case req.Op == OpScore && h.Score != nil && req.Score != nil:
		res, err := h.Score(ctx, *req.Score)
		if err != nil {
			resp.Error, resp.Code = err.Error(), codeOf(err)
		} else {
			resp.Score = &res
		}
	case req.Op == OpFaces && h.Faces != nil && req.Faces != nil:
		res, err := h.Faces(ctx, *req.Faces)
		if err != nil {
			resp.Error, resp.Code = err.Error(), codeOf(err)
		} else {
			resp.Faces = &res
		}
	case req.Op == OpValidate && h.Validate != nil && req.Validate != nil:
		res, err := h.Validate(ctx, *req.Validate)
		if err != nil {
			resp.Error, resp.Code = err.Error(), codeOf(err)
		} else {
			resp.Validate = &res
		}
	case req.Op == OpClean && h.Clean != nil && req.Clean != nil:
		res, err := h.Clean(ctx, *req.Clean)
		if err != nil {
			resp.Error, resp.Code = err.Error(), codeOf(err)
		} else {
			resp.Clean = &res
		}
	default:
		resp.Error, resp.Code = fmt.Sprintf("unsupported op %q", req.Op), CodeUnsupported
	}
	return resp
}
