package diag

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// FuzzHandler feeds arbitrary methods, paths and queries (socket requests
// are untrusted bytes) through the handler: it must never panic, always
// answer JSON outside /metrics, and record exactly one access per request.
func FuzzHandler(f *testing.F) {
	for _, s := range [][3]string{
		{"GET", "/v1/audit", "limit=5"},
		{"GET", "/v1/audit", "limit=-1&limit=x"},
		{"GET", "/v1/audit", "limit=%zz"},
		{"POST", "/v1/health", ""},
		{"GET", "/v1/status", ""},
		{"GET", "/../v1/health", ""},
		{"BREW", "/metrics", ""},
		{"GET", "/" + strings.Repeat("a", 500), ""},
	} {
		f.Add(s[0], s[1], s[2], uint32(0))
	}
	f.Fuzz(func(t *testing.T, method, path, query string, uid uint32) {
		fb := newFake()
		srv, err := New(Config{Backend: fb, Socket: "/nonexistent/diag.sock", AllowedUIDs: []uint32{0}, Metrics: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		req := &http.Request{
			Method: method,
			URL:    &url.URL{Path: path, RawQuery: query},
			Header: http.Header{},
			Body:   http.NoBody,
		}
		req = req.WithContext(WithPeerUID(t.Context(), uid))
		w := httptest.NewRecorder()
		srv.Handler().ServeHTTP(w, req)

		acc := fb.accesses()
		if len(acc) != 1 || acc[0].Status != w.Code || acc[0].UID != uid || len(acc[0].Path) > 260 {
			t.Fatalf("access trail %+v for status %d", acc, w.Code)
		}
		if uid != 0 && w.Code != http.StatusForbidden {
			t.Fatalf("uid %d got %d", uid, w.Code)
		}
		if path == "/metrics" && w.Code == http.StatusOK {
			return
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("content type %q for %s %q", ct, method, path)
		}
		if !json.Valid(w.Body.Bytes()) {
			t.Fatalf("invalid JSON %q", w.Body.Bytes())
		}
	})
}
