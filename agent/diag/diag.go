// Package diag owns the technicians' local API: HTTP/1.1 over a Unix socket,
// served to the aiboctl CLI. Every connection's peer is identified with
// SO_PEERCRED and, when an allow-list is configured, other peers get 403.
//
// Answers carry counts, ages, ids and hashes only. This package must never
// return image bytes, face templates, display names or birthdays: it serves
// only what the Backend hands it, and as a second line of defence it redacts
// keys that name such content (display_name, birthday, template, image, ...)
// and over-long strings or numeric arrays from free-form answers before they
// leave the process.
package diag

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"

	"github.com/aibo-privacy/aibo-privacyd/core/audit"
)

// Check is the outcome of one health or self-test check.
type Check struct {
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// Health is the answer of /v1/health (and of POST /v1/selftest).
type Health struct {
	Status string           `json:"status"` // "ok" or "degraded"
	Checks map[string]Check `json:"checks"`
}

// Backend is what the daemon exposes to technicians. Every method returns
// JSON-marshalable values.
type Backend interface {
	Health(ctx context.Context) Health
	Status(ctx context.Context) (any, error)
	Audit(ctx context.Context, limit int) ([]audit.Record, error) // newest first
	AuditVerify(ctx context.Context) (audit.Report, error)
	// Access is called once per request, refused ones included, for the
	// audit trail: peer uid, method, path (a route, or "(unknown)"), and
	// the HTTP status about to be sent. It is called before any of the
	// answer leaves: an error means the access could not be audited (a
	// full disk), and the peer gets 503 instead of the answer.
	Access(ctx context.Context, uid uint32, method, path string, status int) error
}

// OverloadBackend is optionally implemented by a Backend to count the
// connections turned away because MaxConns were open (peer uid, never
// waited on: they are refused before any work).
type OverloadBackend interface {
	Overloaded(uid uint32)
}

// QueueBackend is optionally implemented by a Backend to serve GET /v1/queue
// (contract section 7: outbox by kind, count, bytes, oldest age). Without it
// the route answers 501.
type QueueBackend interface {
	Queue(ctx context.Context) (any, error)
}

// InventoryBackend is optionally implemented by a Backend to serve
// GET /v1/inventory (as the inventory artifact: counts and ages, never
// content). Without it the route answers 501.
type InventoryBackend interface {
	Inventory(ctx context.Context) (any, error)
}

// SelftestBackend is optionally implemented by a Backend to serve
// POST /v1/selftest. The answer has the shape of Health: 200 when Status is
// "ok", 503 otherwise. Without it the route answers 501. One self-test
// runs at a time: a request while one runs is answered 429 busy at once.
type SelftestBackend interface {
	Selftest(ctx context.Context) Health
}

// Config configures a Server.
type Config struct {
	Socket      string
	AllowedUIDs []uint32 // empty: the socket's file mode 0660 is the only gate
	Backend     Backend
	Metrics     prometheus.Gatherer // served on /metrics; nil: prometheus.DefaultGatherer
	Logger      *slog.Logger        // nil: discard
	MaxConns    int                 // connections served at once; 0: DefaultMaxConns
}

// Limits and timeouts of the diagnostic server.
const (
	SocketMode        os.FileMode = 0o660
	DirMode           os.FileMode = 0o750
	MaxBodyBytes                  = 64 << 10
	MaxHeaderBytes                = 16 << 10
	ReadHeaderTimeout             = 5 * time.Second
	ReadTimeout                   = 10 * time.Second
	WriteTimeout                  = 30 * time.Second
	IdleTimeout                   = 60 * time.Second
	ShutdownTimeout               = 2 * time.Second
	DefaultAuditLimit             = 50
	MaxAuditLimit                 = 1000
	// DefaultMaxConns bounds the connections served at once; more are
	// answered 503 and closed at once.
	DefaultMaxConns = 16
	// UnknownPath is what the audit trail records for a path that is not
	// a route, so a peer cannot grow it with made-up paths.
	UnknownPath = "(unknown)"

	// backendTimeout bounds each Backend call so the answer is written
	// before WriteTimeout closes the connection.
	backendTimeout = WriteTimeout - 5*time.Second
	// maxSunPath is the longest socket path bind(2) accepts on Linux
	// (sun_path is 108 bytes including the terminating NUL).
	maxSunPath = 107
	// tmpNameLen is the length of the temporary socket name used while
	// binding: "." + 'd' + 12 hex digits.
	tmpNameLen = 14
)

// Server serves the diagnostic API on a Unix socket.
type Server struct {
	cfg     Config
	log     *slog.Logger
	allowed map[uint32]struct{}
	handler http.Handler

	mu      sync.Mutex
	started bool

	selftesting sync.Mutex // held while a self-test runs

	overMu     sync.Mutex
	overLogged time.Time // last "connections refused" line
	overSince  int       // refused since that line
}

// overloadLog logs refused connections at most once every 10 s, with how
// many were refused meanwhile.
func (s *Server) overloadLog(uid uint32) {
	s.overMu.Lock()
	defer s.overMu.Unlock()
	s.overSince++
	if time.Since(s.overLogged) < 10*time.Second {
		return
	}
	s.log.Warn("diagnostic socket: connections refused, too many open", "max_conns", s.cfg.MaxConns, "refused", s.overSince, "last_uid", uid)
	s.overLogged, s.overSince = time.Now(), 0
}

// New validates cfg and returns a Server; it does not touch the file system.
func New(cfg Config) (*Server, error) {
	if cfg.Backend == nil {
		return nil, errors.New("diag: no backend")
	}
	if cfg.Socket == "" {
		return nil, errors.New("diag: no socket path")
	}
	if cfg.Socket[0] == '@' {
		return nil, fmt.Errorf("diag: socket %q: abstract sockets are not supported", cfg.Socket)
	}
	if len(cfg.Socket) > maxSunPath || len(filepath.Dir(cfg.Socket))+1+tmpNameLen > maxSunPath {
		return nil, fmt.Errorf("diag: socket path %q is too long for a Unix socket (at most %d bytes, directory at most %d)",
			cfg.Socket, maxSunPath, maxSunPath-1-tmpNameLen)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.DefaultGatherer
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	if len(cfg.AllowedUIDs) > 0 {
		s.allowed = make(map[uint32]struct{}, len(cfg.AllowedUIDs))
		for _, uid := range cfg.AllowedUIDs {
			s.allowed[uid] = struct{}{}
		}
	}
	s.handler = s.routes()
	return s, nil
}

// Handler returns the server's HTTP handler (peer check, routing, access
// trail). Requests whose context carries no peer uid are treated as coming
// from an unidentified peer: forbidden when AllowedUIDs is set.
func (s *Server) Handler() http.Handler { return s.handler }

// Run removes a stale socket file (only if it is a socket nobody answers on),
// creates the parent directory (0750) if missing, listens, sets the socket's
// mode to 0660 and serves until ctx is done. It then shuts down within 2 s,
// removes the socket file and returns nil. A Server runs at most once.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("diag: server already started")
	}
	s.started = true
	s.mu.Unlock()

	ln, err := s.listen()
	if err != nil {
		return err
	}
	// Remember which file is ours, so shutdown never removes a socket that
	// someone else put in its place.
	ours, _ := os.Lstat(s.cfg.Socket)

	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ConnContext:       connContext,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	allowed := "any peer the socket file's mode lets in"
	if len(s.cfg.AllowedUIDs) > 0 {
		allowed = fmt.Sprint(s.cfg.AllowedUIDs)
	}
	s.log.Info("diagnostic socket listening", "socket", s.cfg.Socket, "allowed_uids", allowed)

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(s.limit(ln)) }()

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		serveErr <- err // let the shutdown path below see it as well
		if !errors.Is(err, http.ErrServerClosed) {
			runErr = fmt.Errorf("diag: serve %s: %w", s.cfg.Socket, err)
		}
	}

	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		s.log.Warn("diagnostic socket: shutdown timed out, closing connections", "err", err)
		_ = srv.Close()
	}
	<-serveErr
	if fi, err := os.Lstat(s.cfg.Socket); err == nil && ours != nil && os.SameFile(fi, ours) {
		if err := os.Remove(s.cfg.Socket); err != nil && runErr == nil {
			runErr = fmt.Errorf("diag: remove socket: %w", err)
		}
	}
	s.log.Info("diagnostic socket closed", "socket", s.cfg.Socket)
	return runErr
}

// listen binds the socket under a temporary name in the target directory,
// sets its mode, then renames it into place, so the socket is never
// reachable with a looser mode than 0660 and a stale socket is replaced
// atomically.
func (s *Server) listen() (*net.UnixListener, error) {
	path := s.cfg.Socket
	dir := filepath.Dir(path)

	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("diag: %s exists and is not a socket; refusing to replace it", path)
		}
		c, err := net.DialTimeout("unix", path, 500*time.Millisecond)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("diag: %s is in use by another process", path)
		}
		s.log.Info("replacing stale diagnostic socket", "socket", path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("diag: stat socket: %w", err)
	}

	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, DirMode); err != nil {
			return nil, fmt.Errorf("diag: create socket directory: %w", err)
		}
		if err := os.Chmod(dir, DirMode); err != nil { // the umask may have narrowed it
			return nil, fmt.Errorf("diag: chmod socket directory: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("diag: socket directory: %w", err)
	}

	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("diag: temp socket name: %w", err)
	}
	tmp := filepath.Join(dir, ".d"+hex.EncodeToString(rnd[:]))
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("diag: listen: %w", err)
	}
	// The listener must not unlink the temporary name on close: after the
	// rename Run removes the real path itself.
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*net.UnixListener, error) {
		ln.Close()
		os.Remove(tmp)
		return nil, err
	}
	if err := os.Chmod(tmp, SocketMode); err != nil {
		return fail(fmt.Errorf("diag: chmod socket: %w", err))
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(fmt.Errorf("diag: place socket: %w", err))
	}
	return ln, nil
}

// peerKey is the context key of the peer uid.
type peerKey struct{}

// unknownUID is reported to Backend.Access when the peer could not be
// identified ((uid_t)-1).
const unknownUID = ^uint32(0)

// connContext identifies the peer of a new connection with SO_PEERCRED.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if lc, ok := c.(*limitedConn); ok {
		c = lc.Conn
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || credErr != nil || cred == nil {
		return ctx
	}
	return WithPeerUID(ctx, cred.Uid)
}

// WithPeerUID returns ctx carrying uid as the peer's identity. The server
// does this for every connection; it is exported for tests of handlers.
func WithPeerUID(ctx context.Context, uid uint32) context.Context {
	return context.WithValue(ctx, peerKey{}, uid)
}

// PeerUID returns the uid attached to the request context.
func PeerUID(ctx context.Context) (uint32, bool) {
	uid, ok := ctx.Value(peerKey{}).(uint32)
	return uid, ok
}

type route struct {
	method string
	h      func(w http.ResponseWriter, r *http.Request)
}

func (s *Server) routes() http.Handler {
	table := map[string]route{
		"/v1/health":       {http.MethodGet, s.health},
		"/v1/status":       {http.MethodGet, s.status},
		"/v1/queue":        {http.MethodGet, s.queue},
		"/v1/inventory":    {http.MethodGet, s.inventory},
		"/v1/audit":        {http.MethodGet, s.audit},
		"/v1/audit/verify": {http.MethodGet, s.auditVerify},
		"/v1/selftest":     {http.MethodPost, s.selftest},
		"/metrics": {http.MethodGet, promhttp.HandlerFor(s.cfg.Metrics, promhttp.HandlerOpts{
			ErrorLog:      slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
			ErrorHandling: promhttp.ContinueOnError,
		}).ServeHTTP},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The answer is held until the access is on record: one that
		// cannot be audited is not served.
		buf := &buffered{header: http.Header{}}
		uid, known := PeerUID(r.Context())
		if !known {
			uid = unknownUID
		}
		method, path := accessMethod(r.Method), UnknownPath
		if _, ok := table[r.URL.Path]; ok {
			path = r.URL.Path
		}
		defer func() {
			status := buf.status
			if status == 0 {
				status = http.StatusOK
			}
			if err := s.cfg.Backend.Access(r.Context(), uid, method, path, status); err != nil {
				s.log.Warn("diagnostic request refused: it cannot be audited", "uid", uid, "method", method, "path", path, "err", err)
				writeError(w, http.StatusServiceUnavailable, "unavailable: this request cannot be audited ("+auditCause(err)+")")
				return
			}
			buf.flush(w)
		}()

		if s.allowed != nil {
			if _, ok := s.allowed[uid]; !ok || !known {
				s.log.Warn("diagnostic socket: peer refused", "uid", uid, "method", method, "path", path)
				writeError(buf, http.StatusForbidden, "forbidden")
				return
			}
		}
		r.Body = http.MaxBytesReader(buf, r.Body, MaxBodyBytes)

		rt, ok := table[r.URL.Path]
		switch {
		case !ok:
			writeError(buf, http.StatusNotFound, "not found")
		case r.Method != rt.method && !(rt.method == http.MethodGet && r.Method == http.MethodHead):
			allow := rt.method
			if rt.method == http.MethodGet {
				allow += ", " + http.MethodHead
			}
			buf.Header().Set("Allow", allow)
			writeError(buf, http.StatusMethodNotAllowed, "method not allowed")
		default:
			ctx, cancel := context.WithTimeout(r.Context(), backendTimeout)
			defer cancel()
			rt.h(buf, r.WithContext(ctx))
		}
	})
}

// auditCause names why an access could not be audited, without details.
func auditCause(err error) string {
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return "no space left on the device"
	}
	return "the store refused the write"
}

// accessMethod bounds the methods the audit trail records.
func accessMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost:
		return m
	}
	return "OTHER"
}

// buffered holds an answer until it may be sent.
type buffered struct {
	header http.Header
	status int
	body   []byte
}

func (b *buffered) Header() http.Header { return b.header }

func (b *buffered) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}

func (b *buffered) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	b.body = append(b.body, p...)
	return len(p), nil
}

// flush sends the held answer.
func (b *buffered) flush(w http.ResponseWriter) {
	h := w.Header()
	for k, v := range b.header {
		h[k] = v
	}
	status := b.status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = w.Write(b.body)
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	s.writeHealth(w, s.cfg.Backend.Health(r.Context()))
}

func (s *Server) writeHealth(w http.ResponseWriter, h Health) {
	if h.Checks == nil {
		h.Checks = map[string]Check{}
	}
	code := http.StatusOK
	if h.Status != "ok" {
		code = http.StatusServiceUnavailable
		if h.Status == "" {
			h.Status = "degraded"
		}
	}
	s.writeJSON(w, code, h)
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	v, err := s.cfg.Backend.Status(r.Context())
	s.writeFreeForm(w, r, "status", v, err)
}

func (s *Server) queue(w http.ResponseWriter, r *http.Request) {
	q, ok := s.cfg.Backend.(QueueBackend)
	if !ok {
		writeError(w, http.StatusNotImplemented, "not implemented")
		return
	}
	v, err := q.Queue(r.Context())
	s.writeFreeForm(w, r, "queue", v, err)
}

func (s *Server) inventory(w http.ResponseWriter, r *http.Request) {
	inv, ok := s.cfg.Backend.(InventoryBackend)
	if !ok {
		writeError(w, http.StatusNotImplemented, "not implemented")
		return
	}
	v, err := inv.Inventory(r.Context())
	s.writeFreeForm(w, r, "inventory", v, err)
}

func (s *Server) selftest(w http.ResponseWriter, r *http.Request) {
	st, ok := s.cfg.Backend.(SelftestBackend)
	if !ok {
		writeError(w, http.StatusNotImplemented, "not implemented")
		return
	}
	if !s.selftesting.TryLock() {
		writeError(w, http.StatusTooManyRequests, "busy: a self-test is already running")
		return
	}
	defer s.selftesting.Unlock()
	s.writeHealth(w, st.Selftest(r.Context()))
}

// writeFreeForm answers with a backend value of unknown shape, redacted.
func (s *Server) writeFreeForm(w http.ResponseWriter, r *http.Request, what string, v any, err error) {
	if err != nil {
		s.internal(w, r, what, err)
		return
	}
	clean, redacted, err := redactValue(v)
	if err != nil {
		s.internal(w, r, what, err)
		return
	}
	if len(redacted) > 0 {
		s.log.Warn("diagnostic answer redacted", "what", what, "paths", redacted)
	}
	s.writeJSON(w, http.StatusOK, clean)
}

func (s *Server) audit(w http.ResponseWriter, r *http.Request) {
	limit, err := parseLimit(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	recs, err := s.cfg.Backend.Audit(r.Context(), limit)
	if err != nil {
		s.internal(w, r, "audit", err)
		return
	}
	if len(recs) > limit {
		recs = recs[:limit]
	}
	out := make([]audit.Record, len(recs))
	var redacted []string
	for i, rec := range recs {
		rec.Fields, redacted = redactFields(rec.Fields, fmt.Sprintf("[%d].fields", i), redacted)
		out[i] = rec
	}
	if len(redacted) > 0 {
		s.log.Warn("diagnostic answer redacted", "what", "audit", "paths", redacted)
	}
	s.writeJSON(w, http.StatusOK, out)
}

// parseLimit reads ?limit=N: absent means DefaultAuditLimit, otherwise an
// integer in 1..MaxAuditLimit.
func parseLimit(q map[string][]string) (int, error) {
	vals, ok := q["limit"]
	if !ok {
		return DefaultAuditLimit, nil
	}
	bad := fmt.Errorf("limit must be an integer from 1 to %d", MaxAuditLimit)
	if len(vals) != 1 {
		return 0, bad
	}
	n, err := strconv.Atoi(vals[0])
	if err != nil || n < 1 || n > MaxAuditLimit {
		return 0, bad
	}
	return n, nil
}

func (s *Server) auditVerify(w http.ResponseWriter, r *http.Request) {
	rep, err := s.cfg.Backend.AuditVerify(r.Context())
	if err != nil {
		s.internal(w, r, "audit verify", err)
		return
	}
	s.writeJSON(w, http.StatusOK, rep)
}

// internal logs err and answers 500 without revealing it.
func (s *Server) internal(w http.ResponseWriter, r *http.Request, what string, err error) {
	s.log.Error("diagnostic backend failed", "what", what, "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, "internal")
}

func (s *Server) writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.log.Error("diagnostic answer: encode", "err", err)
		writeError(w, http.StatusInternalServerError, "internal")
		return
	}
	writeBody(w, code, append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	writeBody(w, code, append(b, '\n'))
}

func writeBody(w http.ResponseWriter, code int, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	_, _ = w.Write(b)
}
