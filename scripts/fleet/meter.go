package main

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
)

// A meter counts what crosses a robot's TCP connections, in MQTT packets
// and bytes per kind and direction, by reading the MQTT 3.1.1 framing of
// the bytes the link actually wrote and read. The broker counts bytes
// per connection and messages per node, never per topic: these counts
// are what the broker's totals are reconciled with.
type meter struct {
	mu     sync.Mutex
	tally  map[string]*tally // "out chunk", "in PINGRESP", ...
	prefix string            // aibo/{device_id}/
	wire   [2]atomic.Int64   // bytes out, in
}

type tally struct {
	Msgs  int64 `json:"msgs"`
	Bytes int64 `json:"bytes"`
}

const (
	dirOut = 0 // robot to broker
	dirIn  = 1 // broker to robot
)

var dirName = [2]string{"out", "in"}

func newMeter(deviceID string) *meter {
	return &meter{tally: map[string]*tally{}, prefix: "aibo/" + deviceID + "/"}
}

func (m *meter) add(dir int, kind string, size int64) {
	m.mu.Lock()
	k := dirName[dir] + " " + kind
	t := m.tally[k]
	if t == nil {
		t = &tally{}
		m.tally[k] = t
	}
	t.Msgs++
	t.Bytes += size
	m.mu.Unlock()
}

// snapshot copies the tallies.
func (m *meter) snapshot() map[string]tally {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]tally, len(m.tally))
	for k, t := range m.tally {
		out[k] = *t
	}
	return out
}

// topicKind names a topic by what the contract (section 4) carries on it.
func (m *meter) topicKind(topic string) string {
	rest, ok := strings.CutPrefix(topic, m.prefix)
	if !ok {
		return "other"
	}
	switch {
	case rest == "status", rest == "state", rest == "cmd", rest == "cmd/result", rest == "events":
		return rest
	case strings.HasPrefix(rest, "artifacts/"):
		switch {
		case strings.HasSuffix(rest, "/meta"):
			return "artifact meta"
		case strings.HasSuffix(rest, "/ack"):
			return "artifact ack"
		case strings.Contains(rest, "/chunk/"):
			return "artifact chunk"
		}
	case strings.HasPrefix(rest, "firmware/"):
		return "firmware"
	}
	return "other"
}

var packetNames = [16]string{"reserved", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL",
	"PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "reserved"}

// framer follows the MQTT framing of one direction of one connection: a
// fixed header byte, the remaining length (1..4 bytes, 7 bits each), and
// for PUBLISH the topic at the start of the variable header.
type framer struct {
	m   *meter
	dir int

	mu       sync.Mutex
	state    int // 0 header byte, 1 length, 2 topic length, 3 topic, 4 rest of body
	typ      byte
	length   int // remaining length
	shift    uint
	lenBytes int
	left     int // bytes of the body still to come
	topicLen int
	topic    []byte
}

func (f *framer) feed(p []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(p) > 0 {
		switch f.state {
		case 0:
			f.typ = p[0] >> 4
			f.length, f.shift, f.lenBytes = 0, 0, 0
			f.state = 1
			p = p[1:]
		case 1:
			b := p[0]
			p = p[1:]
			f.length |= int(b&0x7f) << f.shift
			f.shift += 7
			f.lenBytes++
			if b&0x80 != 0 {
				continue
			}
			f.left = f.length
			if f.typ == 3 { // PUBLISH: the topic names its kind
				f.state, f.topicLen, f.topic = 2, 0, f.topic[:0]
			} else {
				f.count(packetNames[f.typ])
				f.state = 4
			}
			if f.left == 0 {
				f.state = 0
			}
		case 2: // two bytes of topic length
			f.topicLen = f.topicLen<<8 | int(p[0])
			f.topic = append(f.topic, p[0])
			p = p[1:]
			f.left--
			if len(f.topic) == 2 {
				f.topic = f.topic[:0]
				f.state = 3
				if f.topicLen == 0 {
					f.count(f.m.topicKind(""))
					f.state = 4
				}
			}
		case 3:
			n := min(len(p), f.topicLen-len(f.topic), f.left)
			f.topic = append(f.topic, p[:n]...)
			p = p[n:]
			f.left -= n
			if len(f.topic) == f.topicLen {
				f.count(f.m.topicKind(string(f.topic)))
				f.state = 4
			}
		case 4:
			n := min(len(p), f.left)
			p = p[n:]
			f.left -= n
		}
		if f.state >= 2 && f.left == 0 {
			f.state = 0
		}
	}
}

// count records the current packet, whole: header byte, length bytes, body.
func (f *framer) count(kind string) {
	f.m.add(f.dir, kind, int64(1+f.lenBytes+f.length))
}

// conn is a net.Conn whose traffic a meter counts.
type conn struct {
	net.Conn
	m       *meter
	out, in *framer
}

func (m *meter) wrap(c net.Conn) net.Conn {
	return &conn{Conn: c, m: m, out: &framer{m: m, dir: dirOut}, in: &framer{m: m, dir: dirIn}}
}

func (c *conn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.feed(p[:n])
	c.m.wire[dirOut].Add(int64(n))
	return n, err
}

// SetWriteBuffer passes the link's send buffer on to the socket.
func (c *conn) SetWriteBuffer(n int) error {
	if b, ok := c.Conn.(interface{ SetWriteBuffer(int) error }); ok {
		return b.SetWriteBuffer(n)
	}
	return nil
}

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.feed(p[:n])
	c.m.wire[dirIn].Add(int64(n))
	return n, err
}

// dialer returns a link.Config.Dial that meters every connection; dial
// opens it (a plain TCP dial, or one from inside a network namespace).
func (m *meter) dialer(dial func(ctx context.Context, addr string) (net.Conn, error)) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := dial(ctx, addr)
		if err != nil {
			return nil, err
		}
		return m.wrap(c), nil
	}
}

func tcpDial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}
