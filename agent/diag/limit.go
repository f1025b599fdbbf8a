package diag

import (
	"context"
	"net"
	"sync"
	"time"
)

// overloadAnswer is what a connection over MaxConns gets before it is
// closed: no request is read, no backend is called.
const overloadAnswer = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 30\r\nConnection: close\r\n\r\n{\"error\":\"too many requests\"}\n"

// limitListener serves at most n connections at once. Over that, a
// connection is answered 503 and closed at once (counted through the
// backend's Overloaded when it has one), so a local peer cannot hold every
// slot nor queue unbounded work.
type limitListener struct {
	net.Listener
	s    *Server
	mu   sync.Mutex
	open int
	max  int
}

func (s *Server) limit(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, s: s, max: s.cfg.MaxConns}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		if l.open >= l.max {
			l.mu.Unlock()
			l.refuse(c)
			continue
		}
		l.open++
		l.mu.Unlock()
		return &limitedConn{Conn: c, l: l}, nil
	}
}

func (l *limitListener) refuse(c net.Conn) {
	uid, ok := PeerUID(connContext(context.Background(), c))
	if !ok {
		uid = unknownUID
	}
	_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	_, _ = c.Write([]byte(overloadAnswer))
	_ = c.Close()
	if ob, ok := l.s.cfg.Backend.(OverloadBackend); ok {
		ob.Overloaded(uid)
	}
	l.s.overloadLog(uid)
}

func (l *limitListener) release() {
	l.mu.Lock()
	l.open--
	l.mu.Unlock()
}

type limitedConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.l.release)
	return err
}
