package diag

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestP16_AnAnswerThatCannotBeAuditedIsNotServed (issue 15 item 3): when
// the access cannot be put on record (a full disk), the peer gets 503 and
// none of the answer.
func TestP16_AnAnswerThatCannotBeAuditedIsNotServed(t *testing.T) {
	fb := newFake()
	fb.status = map[string]any{"device_id": "aibo-secret-answer"}
	r := start(t, Config{Backend: fb})
	fb.mu.Lock()
	fb.accessErr = fmt.Errorf("audit: %w", syscall.ENOSPC)
	fb.mu.Unlock()
	for _, p := range []string{"/v1/status", "/metrics", "/v1/nope"} {
		code, _, body := r.do(t, "GET", p)
		if code != http.StatusServiceUnavailable || strings.Contains(string(body), "aibo-secret-answer") || strings.Contains(string(body), "go_goroutines") {
			t.Fatalf("GET %s with the audit failing: %d %s", p, code, body)
		}
		wantError(t, body, "unavailable: this request cannot be audited (no space left on the device)")
	}
	fb.mu.Lock()
	fb.accessErr = nil
	fb.mu.Unlock()
	if code, _, body := r.do(t, "GET", "/v1/status"); code != 200 || !strings.Contains(string(body), "aibo-secret-answer") {
		t.Fatalf("after the disk has room: %d %s", code, body)
	}
}

// TestUnknownPathsAreAuditedAsOne: made-up paths cannot grow the trail.
func TestUnknownPathsAreAuditedAsOne(t *testing.T) {
	fb := newFake()
	r := start(t, Config{Backend: fb})
	for i := range 5 {
		r.do(t, "GET", fmt.Sprintf("/x%d", i))
	}
	r.do(t, "PATCH", "/v1/status")
	acc := fb.accesses()
	for _, a := range acc[:5] {
		if a.Path != UnknownPath || a.Status != 404 {
			t.Fatalf("access %+v, want %s 404", a, UnknownPath)
		}
	}
	if a := acc[5]; a.Method != "OTHER" || a.Path != "/v1/status" || a.Status != 405 {
		t.Fatalf("access %+v", a)
	}
}

type overloadBackend struct {
	*fakeBackend
	mu   sync.Mutex
	uids []uint32
}

func (o *overloadBackend) Overloaded(uid uint32) {
	o.mu.Lock()
	o.uids = append(o.uids, uid)
	o.mu.Unlock()
}

// TestConnectionsAreCapped (issue 12 item 6): with MaxConns open, another
// connection is answered 503 at once and counted; a freed slot serves
// again.
func TestConnectionsAreCapped(t *testing.T) {
	ob := &overloadBackend{fakeBackend: newFake()}
	r := start(t, Config{Backend: ob, MaxConns: 3})
	time.Sleep(100 * time.Millisecond) // start's probe connection is released
	var held []net.Conn
	for range 3 {
		c, err := net.Dial("unix", r.sock)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	time.Sleep(50 * time.Millisecond) // let the server accept them
	c, err := net.Dial("unix", r.sock)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(c, "GET /v1/status HTTP/1.1\r\nHost: diag\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 503 {
		t.Fatalf("connection over the cap: %v %v", resp, err)
	}
	c.Close()
	ob.mu.Lock()
	n := len(ob.uids)
	ob.mu.Unlock()
	if n != 1 {
		t.Fatalf("Overloaded called %d times", n)
	}
	held[0].Close()
	time.Sleep(50 * time.Millisecond)
	r.client.CloseIdleConnections()
	if code, _, _ := r.do(t, "GET", "/v1/health"); code != 200 {
		t.Fatalf("after a slot freed: %d", code)
	}
	for _, h := range held[1:] {
		h.Close()
	}
}
