package testbroker

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

const opTimeout = 5 * time.Second

var clientSeq atomic.Int64

// Client is a connected MQTT client acting as the cloud or the app.
type Client struct {
	c mqtt.Client
}

// Message is one received MQTT message.
type Message struct {
	Topic    string
	Payload  []byte
	Retained bool
}

// Client connects a new clean-session client to the broker (with the client
// certificate for a TLS broker). It is disconnected at test cleanup.
func (b *Broker) Client(t testing.TB) *Client {
	t.Helper()
	opts := mqtt.NewClientOptions().
		AddBroker(b.URL).
		SetClientID(fmt.Sprintf("testbroker-%d-%d", os.Getpid(), clientSeq.Add(1))).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectTimeout(opTimeout)
	if strings.HasPrefix(b.URL, "ssl://") {
		opts.SetTLSConfig(b.clientTLS(t))
	}
	c := mqtt.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(opTimeout) {
		t.Fatalf("testbroker: client connect to %s: timeout", b.URL)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("testbroker: client connect to %s: %v", b.URL, err)
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return &Client{c: c}
}

// clientTLS builds the client's TLS configuration from CAFile, CertFile and
// KeyFile.
func (b *Broker) clientTLS(t testing.TB) *tls.Config {
	t.Helper()
	pemCA, err := os.ReadFile(b.CAFile)
	if err != nil {
		t.Fatalf("testbroker: read CA: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemCA) {
		t.Fatalf("testbroker: no certificate in %s", b.CAFile)
	}
	cert, err := tls.LoadX509KeyPair(b.CertFile, b.KeyFile)
	if err != nil {
		t.Fatalf("testbroker: load client certificate: %v", err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// Publish publishes at QoS 1 and waits for the broker's acknowledgement.
func (c *Client) Publish(t testing.TB, topic string, payload []byte, retained bool) {
	t.Helper()
	tok := c.c.Publish(topic, 1, retained, payload)
	if !tok.WaitTimeout(opTimeout) {
		t.Fatalf("testbroker: publish %s: timeout", topic)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("testbroker: publish %s: %v", topic, err)
	}
}

// TryPublish is Publish returning the error instead of failing the test
// (for a client that outlives broker outages).
func (c *Client) TryPublish(topic string, payload []byte, retained bool) error {
	tok := c.c.Publish(topic, 1, retained, payload)
	if !tok.WaitTimeout(opTimeout) {
		return fmt.Errorf("testbroker: publish %s: timeout", topic)
	}
	return tok.Error()
}

// Subscribe subscribes at QoS 1 to filter and collects what arrives. It
// returns after the broker acknowledged the subscription.
func (c *Client) Subscribe(t testing.TB, filter string) *Sub {
	t.Helper()
	s := &Sub{filter: filter, changed: make(chan struct{})}
	tok := c.c.Subscribe(filter, 1, func(_ mqtt.Client, m mqtt.Message) {
		s.add(Message{Topic: m.Topic(), Payload: append([]byte(nil), m.Payload()...), Retained: m.Retained()})
	})
	if !tok.WaitTimeout(opTimeout) {
		t.Fatalf("testbroker: subscribe %s: timeout", filter)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("testbroker: subscribe %s: %v", filter, err)
	}
	return s
}

// Sub collects the messages of one subscription. Next and WaitFor consume
// them in arrival order; All returns every message received so far.
type Sub struct {
	filter string

	mu      sync.Mutex
	msgs    []Message
	next    int           // index of the first message not yet consumed
	changed chan struct{} // closed and replaced whenever a message arrives
}

func (s *Sub) add(m Message) {
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// Next returns the next unconsumed message, failing the test if none
// arrives within timeout.
func (s *Sub) Next(t testing.TB, timeout time.Duration) Message {
	t.Helper()
	return s.WaitFor(t, timeout, func(Message) bool { return true })
}

// WaitFor consumes messages until one satisfies match and returns it,
// failing the test if none does within timeout. Skipped messages stay
// visible in All.
func (s *Sub) WaitFor(t testing.TB, timeout time.Duration, match func(Message) bool) Message {
	t.Helper()
	m, ok := s.wait(timeout, match)
	if !ok {
		t.Fatalf("testbroker: no matching message on %s within %v; received: %s", s.filter, timeout, describe(s.All()))
	}
	return m
}

// WaitWithin is WaitFor without failing: it reports whether a message
// satisfying match arrived within timeout.
func (s *Sub) WaitWithin(timeout time.Duration, match func(Message) bool) bool {
	_, ok := s.wait(timeout, match)
	return ok
}

func (s *Sub) wait(timeout time.Duration, match func(Message) bool) (Message, bool) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		for s.next < len(s.msgs) {
			m := s.msgs[s.next]
			s.next++
			if match(m) {
				s.mu.Unlock()
				return m, true
			}
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-timer.C:
			return Message{}, false
		}
	}
}

// All returns a copy of every message received so far.
func (s *Sub) All() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

func describe(msgs []Message) string {
	if len(msgs) == 0 {
		return "nothing"
	}
	parts := make([]string, len(msgs))
	for i, m := range msgs {
		parts[i] = fmt.Sprintf("%s %q retained=%v", m.Topic, m.Payload, m.Retained)
	}
	return strings.Join(parts, "; ")
}
