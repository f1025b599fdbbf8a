// Package link owns the MQTT session between aibo-privacyd and the cloud
// broker: connecting and reconnecting, the retained status and its last
// will, the retained reported state, the command subscription, and QoS 1
// publishing under aibo/{device_id}/.
//
// It never interprets commands or decides what may be sent: the caller's
// CommandHandler turns a command payload into a result, and the caller
// decides (and re-checks consent for) everything it publishes. Nothing is
// queued while offline; the caller owns durability and retries.
//
// The session is persistent (a fixed client id, clean session off), so the
// broker keeps the subscriptions and queues QoS 1 messages (commands,
// firmware chunks, acks) while the daemon is down, and delivers them right
// after the next CONNACK. Every inbound message is acknowledged (PUBACK)
// only after its handler returned, that is after a command's effect
// committed: a crash or a lost connection before that leaves the message
// unacknowledged, and the broker delivers it again on the next connection.
// Handlers therefore see a message at least once; commands are made
// exactly-once by their id.
//
// Payloads are never logged (commands may carry personal data): only
// topics, sizes and errors.
package link

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/aibo-privacy/aibo-privacyd/internal/retry"
)

// ErrNotConnected is returned (possibly wrapped) by Publish when there is no
// open connection, or when the connection was lost before the broker
// acknowledged the message.
var ErrNotConnected = errors.New("mqtt: not connected")

const (
	defaultMinBackoff = 500 * time.Millisecond
	defaultMaxBackoff = 30 * time.Second

	cmdQueueSize = 64  // commands waiting for the handler
	msgQueueSize = 256 // messages waiting for Subscribe handlers

	// Bytes that may wait in each queue. A message over the budget is
	// left unacknowledged: the broker delivers it again on the next
	// connection. (A broker bounds what is in flight per client anyway:
	// Mosquitto's max_inflight_messages is 20.)
	cmdQueueBytes = 8 << 20
	msgQueueBytes = 8 << 20

	// DefaultKeepAlive is the MQTT keepalive when Config.KeepAlive is 0.
	// Two minutes: pings were 5,760 of the 6,200 packets a busy robot-day
	// costs the broker at 30 s (README, "A fleet"), and two minutes stays
	// under the idle timeouts of the load balancers and home routers in
	// front of a broker (Azure's 4 min, AWS NLB's 350 s). The price: a
	// robot that vanishes silently is declared offline (its last will)
	// after 3 minutes instead of 45 s, and notices a dead connection
	// after at most 2 min 10 s instead of 40 s.
	DefaultKeepAlive = 2 * time.Minute

	// DefaultMaxCommandBytes is the largest command queued for the
	// handler: the max_packet_size of the shipped broker configurations.
	DefaultMaxCommandBytes = 1 << 20
	// DefaultMaxMessageBytes is the largest message queued for a Subscribe
	// handler (firmware chunks are at most 128 KiB, acks a few bytes).
	DefaultMaxMessageBytes = 256 << 10
	// oversizedPrefix is how much of an oversized command is kept for
	// Config.Oversized to find its id in.
	oversizedPrefix = 64 << 10

	connectTimeout = 10 * time.Second // TCP + TLS + CONNACK
	pingTimeout    = 10 * time.Second
	opTimeout      = 10 * time.Second // acks for status, subscriptions, state, results
	resultWait     = 2 * time.Second  // a result waits this long for the session (publishResult)
	offlineWait    = time.Second      // bounded wait for "offline" at shutdown
	quiesceMillis  = 250              // paho Disconnect quiesce

	// A session that lasted at least this long resets the reconnect backoff;
	// a connection that flaps keeps backing off.
	stableAfter = time.Minute

	statusOnline  = "online"
	statusOffline = "offline"
)

// sendBuffer is the socket's send buffer (SO_SNDBUF; Linux doubles
// it). Left to the kernel it grows to 4 MiB, and a connection whose
// packets are silently dropped (Wi-Fi gone, a partition) swallows
// megabytes of publishes that never got a PUBACK: nothing notices
// until the keepalive, and when the network returns the kernel sends
// them all at once, past any pace. Small, a write blocks within a
// chunk or two, paho's write timeout (opTimeout) ends the connection
// 10 s later, and what was not acknowledged waits in the outbox.
const sendBuffer = 32 << 10

var deviceIDRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// TLSConfig names PEM files for an ssl:// broker.
type TLSConfig struct {
	CAFile   string // required for ssl://
	CertFile string // client certificate; optional, but only together with KeyFile
	KeyFile  string
}

// Config configures a Link.
type Config struct {
	DeviceID string    // topics live under aibo/{DeviceID}/
	Broker   string    // tcp://host:port or ssl://host:port
	TLS      TLSConfig // used for ssl:// (CA required; cert+key optional as a pair)
	// ClientID names the persistent session; default "aibo-privacyd-" +
	// DeviceID. It must stay the same across restarts: the broker queues
	// what arrives while the daemon is down under this id.
	ClientID string
	Logger   *slog.Logger
	// Backoff bounds for reconnects; defaults 500ms .. 30s. Each wait is
	// drawn uniformly from zero to a ceiling that starts at MinBackoff and
	// doubles with every failed attempt or lost connection, up to
	// MaxBackoff; a connection that lasted a minute resets it.
	MinBackoff, MaxBackoff time.Duration
	// BackoffFile, when set, keeps the backoff across restarts (see
	// backoff.go): a process restarted within a minute of its last
	// attempt waits as if its connection had been lost.
	BackoffFile string
	// KeepAlive is the MQTT keepalive (default DefaultKeepAlive): the
	// longest silence before the link pings, and two thirds of the
	// silence after which the broker drops the connection and publishes
	// the last will.
	KeepAlive time.Duration
	// Dial, when set, opens the network connection to addr (host:port)
	// instead of paho's dialer, for tcp:// brokers only. The fleet
	// simulator counts bytes and cuts the network with it.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// MaxCommandBytes bounds a command queued for the handler (default
	// DefaultMaxCommandBytes); MaxMessageBytes a message queued for a
	// Subscribe handler (default DefaultMaxMessageBytes). Both are checked
	// in paho's callback, before anything is queued; a larger message is
	// acknowledged and dropped with a log line (it would come back
	// otherwise), a larger command after Oversized answered it.
	MaxCommandBytes, MaxMessageBytes int
	// Oversized, when set, answers a command over MaxCommandBytes from its
	// first 64 KiB and its size (the id is read from the prefix); its
	// result is published like any command result.
	Oversized func(ctx context.Context, prefix []byte, size int) []byte
}

// CommandHandler gets each payload received on aibo/{id}/cmd, in arrival
// order, one at a time, and returns the bytes to publish on
// aibo/{id}/cmd/result (QoS 1, not retained), or nil for nothing. If the
// result cannot be published (connection down) it is logged and dropped;
// the cloud resends the command and the caller answers it again.
type CommandHandler func(ctx context.Context, payload []byte) []byte

// Link is the daemon's MQTT connection. Create it with New, register
// subscriptions and hooks, then call Run once.
type Link struct {
	cfg    Config
	handle CommandHandler
	log    *slog.Logger
	tls    *tls.Config // nil for tcp://
	prefix string      // "aibo/{id}/"

	// openConn, when set, replaces paho's dialer (tests use it to cut the
	// network under the link).
	openConn mqtt.OpenConnectionFunc
	// beforeSubscribe, when set, runs between CONNACK and the per-connect
	// subscriptions (tests widen that gap with it).
	beforeSubscribe func()
	// beforeSession, when set, runs between a successful connect and the
	// link taking the session (setSession): tests widen that gap.
	beforeSession func()

	running    atomic.Bool
	cmds       chan inbound
	msgs       chan inbound
	cmdBytes   atomic.Int64  // payload bytes waiting in cmds
	msgBytes   atomic.Int64  // payload bytes waiting in msgs
	stateDirty chan struct{} // capacity 1: "publish the latest state"

	mu       sync.Mutex
	sess     *session // the open session, nil when disconnected
	state    []byte   // latest reported state, nil until SetState
	subs     []subscription
	onChange func(connected bool)
}

type subscription struct {
	suffix string
	h      func(topic string, payload []byte)
}

type inbound struct {
	h         func(topic string, payload []byte)
	topic     string
	payload   []byte
	oversized int    // for a command over MaxCommandBytes: its size (payload holds a prefix)
	ack       func() // PUBACK, sent once the handler has returned
}

// session is one paho client and one network connection. paho clients are
// not reused after a disconnect (paho warns that reuse may panic), so every
// connection attempt gets a fresh client.
type session struct {
	client mqtt.Client
	over   chan struct{} // closed when the connection is lost or closed by us
	once   sync.Once
	err    error // why it ended; written before over is closed
}

func (s *session) end(err error) {
	s.once.Do(func() {
		s.err = err
		close(s.over)
	})
}

// New validates cfg and loads the TLS files. It does not connect.
func New(cfg Config, handle CommandHandler) (*Link, error) {
	if handle == nil {
		return nil, errors.New("mqtt: nil command handler")
	}
	if !deviceIDRe.MatchString(cfg.DeviceID) {
		return nil, fmt.Errorf("mqtt: device_id %q must match [A-Za-z0-9_-]{1,64}", cfg.DeviceID)
	}
	u, err := url.Parse(cfg.Broker)
	if err != nil {
		return nil, fmt.Errorf("mqtt: broker %q: %w", cfg.Broker, err)
	}
	var useTLS bool
	switch u.Scheme {
	case "tcp":
	case "ssl":
		useTLS = true
	default:
		return nil, fmt.Errorf("mqtt: broker %q: scheme must be tcp:// or ssl://", cfg.Broker)
	}
	if u.Hostname() == "" || u.Port() == "" {
		return nil, fmt.Errorf("mqtt: broker %q: want scheme://host:port", cfg.Broker)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return nil, fmt.Errorf("mqtt: broker %q: want scheme://host:port", cfg.Broker)
	}
	var tlsConf *tls.Config
	if useTLS {
		if tlsConf, err = loadTLS(cfg.TLS); err != nil {
			return nil, err
		}
	} else if cfg.TLS != (TLSConfig{}) {
		// Refuse rather than silently send in clear text what the
		// operator meant to protect.
		return nil, fmt.Errorf("mqtt tls: ca_file/cert_file/key_file are set but broker %q is not ssl://", cfg.Broker)
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "aibo-privacyd-" + cfg.DeviceID
	}
	if cfg.MinBackoff < 0 || cfg.MaxBackoff < 0 {
		return nil, errors.New("mqtt: negative backoff")
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = defaultMinBackoff
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = defaultMaxBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = cfg.MinBackoff
	}
	if cfg.KeepAlive < 0 {
		return nil, errors.New("mqtt: negative keepalive")
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.Dial != nil && useTLS {
		return nil, fmt.Errorf("mqtt: broker %q: a custom dialer is for tcp:// only", cfg.Broker)
	}
	if cfg.MaxCommandBytes <= 0 {
		cfg.MaxCommandBytes = DefaultMaxCommandBytes
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	l := &Link{
		cfg:        cfg,
		handle:     handle,
		log:        log,
		tls:        tlsConf,
		prefix:     "aibo/" + cfg.DeviceID + "/",
		cmds:       make(chan inbound, cmdQueueSize),
		msgs:       make(chan inbound, msgQueueSize),
		stateDirty: make(chan struct{}, 1),
	}
	if dial := cfg.Dial; dial != nil {
		l.openConn = func(uri *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
			defer cancel()
			c, err := dial(ctx, uri.Host)
			if err != nil {
				return nil, err
			}
			if b, ok := c.(interface{ SetWriteBuffer(int) error }); ok {
				if err := b.SetWriteBuffer(sendBuffer); err != nil {
					c.Close()
					return nil, fmt.Errorf("send buffer: %w", err)
				}
			}
			return c, nil
		}
	}
	return l, nil
}

func loadTLS(c TLSConfig) (*tls.Config, error) {
	if c.CAFile == "" {
		return nil, errors.New("mqtt tls: ca_file is required for an ssl:// broker")
	}
	caPEM, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("mqtt tls: read ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("mqtt tls: ca_file %s: no PEM certificate found", c.CAFile)
	}
	conf := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	switch {
	case c.CertFile == "" && c.KeyFile == "":
	case c.CertFile == "" || c.KeyFile == "":
		return nil, errors.New("mqtt tls: cert_file and key_file must be set together")
	default:
		if _, err := os.Stat(c.CertFile); err != nil {
			return nil, fmt.Errorf("mqtt tls: read cert_file: %w", err)
		}
		if _, err := os.Stat(c.KeyFile); err != nil {
			return nil, fmt.Errorf("mqtt tls: read key_file: %w", err)
		}
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt tls: load cert_file/key_file: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

func (l *Link) topic(suffix string) string { return l.prefix + suffix }

// Run connects and keeps the session up until ctx is done, then publishes
// retained "offline" (waiting at most ~1 s), disconnects and returns nil.
//
// While the broker is unreachable it retries with exponential backoff and
// full jitter (a wait drawn from zero to a ceiling doubling from
// MinBackoff to MaxBackoff), never giving up; with BackoffFile the
// backoff survives a restart. On every
// (re)connect it publishes retained "online" on status, subscribes cmd and
// every Subscribe topic, and republishes the latest state retained. The
// last will is retained "offline" on status.
//
// The reconnect loop is hand-written rather than paho's AutoReconnect /
// ConnectRetry: paho's retry uses a fixed interval (ConnectRetry) or a
// jitter-less backoff starting at 1 s (AutoReconnect), and while it is
// "reconnecting" it buffers QoS 1 publishes in its store instead of failing
// them. A fresh client per connection (same client id, same broker-side
// session) gives fail-fast publishes, our own backoff, and one obvious
// place for the per-connect work, with no paho client reused after a
// disconnect.
//
// paho's store is in memory and new for every connection, and that is
// enough: nothing outbound relies on it (the outbox and the event queue
// keep what must survive, in bbolt, and resend it), and what is inbound
// and not yet handled is the broker's to keep, since it is acknowledged
// only after handling. A restart loses nothing but paho's message ids.
func (l *Link) Run(ctx context.Context) error {
	if !l.running.CompareAndSwap(false, true) {
		return errors.New("mqtt: Run called more than once")
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { l.commandLoop(ctx) })
	wg.Go(func() { l.messageLoop(ctx) })
	wg.Go(func() { l.stateLoop(ctx) })

	broker := redact(l.cfg.Broker)
	// backoff is the ceiling of the wait after the attempt about to be
	// made, should it fail or its connection end.
	backoff, wait := l.resume()
	failures := 0
	for {
		if wait > 0 && !sleep(ctx, wait) {
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		l.saveBackoff(backoff)
		sess, err := l.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			failures++
			wait = retry.FullJitter(backoff)
			backoff = min(backoff*2, l.cfg.MaxBackoff)
			l.log.Warn("mqtt connect failed", "broker", broker, "attempt", failures, "retry_in", wait, "err", err)
			continue
		}
		failures = 0
		started := time.Now()
		l.log.Info("mqtt connected", "broker", broker, "client_id", l.cfg.ClientID)
		if l.beforeSession != nil {
			l.beforeSession()
		}
		l.setSession(sess)
		// The per-connect work runs beside the wait for the session's end:
		// paho's Publish and Subscribe block for up to the write timeout
		// handing a packet over when the connection stalls or dies under
		// them, and Run must see the loss, or a shutdown, at once.
		after := make(chan struct{})
		go func() {
			defer close(after)
			l.afterConnect(ctx, sess)
		}()

		select {
		case <-ctx.Done():
			// "offline" must follow this session's "online": wait for
			// afterConnect to hand its packets over (it stops at once on
			// ctx), unless a stalled connection holds it, when neither
			// would reach the broker and the will says "offline".
			select {
			case <-after:
			case <-time.After(offlineWait):
			}
			l.shutdown(sess)
			return nil
		case <-sess.over:
		}
		l.clearSession(sess)
		if time.Since(started) >= stableAfter {
			backoff = l.cfg.MinBackoff
		}
		wait = retry.FullJitter(backoff)
		backoff = min(backoff*2, l.cfg.MaxBackoff)
		l.log.Warn("mqtt connection lost", "broker", broker, "err", sess.err, "retry_in", wait)
	}
}

// connect makes one connection attempt with a fresh paho client.
func (l *Link) connect(ctx context.Context) (*session, error) {
	sess := &session{over: make(chan struct{})}
	opts := mqtt.NewClientOptions().
		AddBroker(l.cfg.Broker).
		SetClientID(l.cfg.ClientID).
		SetCleanSession(false).   // the broker queues QoS 1 messages while we are away
		SetAutoAckDisabled(true). // PUBACK after the handler, not on receipt
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(connectTimeout).
		SetDialer(&net.Dialer{Timeout: connectTimeout, Control: smallSendBuffer}).
		SetKeepAlive(l.cfg.KeepAlive).
		SetPingTimeout(pingTimeout).
		SetWriteTimeout(opTimeout).
		SetOrderMatters(true). // callbacks only enqueue, so in-order delivery cannot block paho
		SetStore(mqtt.NewMemoryStore()).
		SetBinaryWill(l.topic("status"), []byte(statusOffline), 1, true).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) { sess.end(err) }).
		// A message on a topic nothing handles (a subscription an older
		// version left in the persistent session) is acknowledged and
		// dropped, or the broker would deliver it again forever.
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
			l.log.Warn("mqtt message on an unhandled topic dropped", "topic", m.Topic(), "size", len(m.Payload()))
			m.Ack()
		})
	if l.tls != nil {
		opts.SetTLSConfig(l.tls.Clone())
	}
	if l.openConn != nil {
		opts.SetCustomOpenConnectionFn(l.openConn)
	}
	c := mqtt.NewClient(opts)
	sess.client = c
	// Routes exist before CONNACK: the broker delivers what it queued for
	// the session right after it, before this connection has subscribed
	// again, and paho drops a message no route (or default handler) takes.
	c.AddRoute(l.topic("cmd"), l.onCommand)
	l.mu.Lock()
	for _, s := range l.subs {
		c.AddRoute(l.topic(s.suffix), l.onMessage(s))
	}
	l.mu.Unlock()
	tok := c.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		// Disconnect waits for the attempt to finish (bounded by
		// connectTimeout); do not hold up shutdown for it.
		go c.Disconnect(0)
		return nil, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	return sess, nil
}

// afterConnect does the per-connection work: status, subscriptions, state.
// It runs on its own goroutine, beside Run's wait for the session's end,
// and hands nothing more to paho once the session or ctx has ended.
func (l *Link) afterConnect(ctx context.Context, sess *session) {
	if l.beforeSubscribe != nil {
		l.beforeSubscribe()
	}
	if ended(ctx, sess) {
		return
	}
	statusTok := sess.client.Publish(l.topic("status"), 1, true, []byte(statusOnline))

	type route struct {
		topic   string
		handler mqtt.MessageHandler
	}
	routes := []route{{l.topic("cmd"), l.onCommand}}
	l.mu.Lock()
	for _, s := range l.subs {
		routes = append(routes, route{l.topic(s.suffix), l.onMessage(s)})
	}
	l.mu.Unlock()
	type pending struct {
		topic string
		tok   mqtt.Token
	}
	var toks []pending
	for _, r := range routes {
		if ended(ctx, sess) {
			break
		}
		toks = append(toks, pending{r.topic, sess.client.Subscribe(r.topic, 1, r.handler)})
	}

	l.signalState()

	wctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if err := waitToken(wctx, sess, statusTok); err != nil {
		l.log.Warn("mqtt publish failed", "topic", l.topic("status"), "err", err)
	}
	for _, p := range toks {
		if err := waitToken(wctx, sess, p.tok); err != nil {
			l.log.Warn("mqtt subscribe failed", "topic", p.topic, "err", err)
		} else if st, ok := p.tok.(*mqtt.SubscribeToken); ok {
			for topic, code := range st.Result() {
				if code == 0x80 {
					l.log.Warn("mqtt subscribe refused by broker", "topic", topic)
				}
			}
		}
	}
}

// ended reports whether ctx is done or sess is over.
func ended(ctx context.Context, sess *session) bool {
	select {
	case <-ctx.Done():
		return true
	case <-sess.over:
		return true
	default:
		return false
	}
}

func (l *Link) subscribeOn(sess *session, s subscription) mqtt.Token {
	return sess.client.Subscribe(l.topic(s.suffix), 1, l.onMessage(s))
}

// onMessage is the paho callback of one subscription. Like onCommand it
// runs on paho's delivery goroutine and must never block.
func (l *Link) onMessage(s subscription) mqtt.MessageHandler {
	return func(_ mqtt.Client, m mqtt.Message) {
		size := len(m.Payload())
		if size > l.cfg.MaxMessageBytes {
			l.log.Warn("mqtt message over the size limit dropped", "topic", m.Topic(), "size", size, "limit", l.cfg.MaxMessageBytes)
			m.Ack()
			return
		}
		if !l.enqueue(l.msgs, &l.msgBytes, msgQueueBytes, inbound{h: s.h, topic: m.Topic(), payload: m.Payload(), ack: m.Ack}) {
			l.log.Warn("mqtt message queue full: left unacknowledged for redelivery on the next connection", "topic", m.Topic(), "size", size)
		}
	}
}

// onCommand runs on paho's delivery goroutine and must never block. paho
// has already read the whole packet (the broker's max_packet_size is what
// bounds that); this check keeps an oversized one from being queued.
func (l *Link) onCommand(_ mqtt.Client, m mqtt.Message) {
	p := m.Payload()
	in := inbound{topic: m.Topic(), payload: p, ack: m.Ack}
	if len(p) > l.cfg.MaxCommandBytes {
		l.log.Warn("mqtt command over the size limit", "topic", m.Topic(), "size", len(p), "limit", l.cfg.MaxCommandBytes)
		in.payload = append([]byte(nil), p[:min(len(p), oversizedPrefix)]...)
		in.oversized = len(p)
	}
	if l.enqueue(l.cmds, &l.cmdBytes, cmdQueueBytes, in) {
		l.log.Debug("mqtt command received", "topic", m.Topic(), "size", len(p))
	} else {
		l.log.Warn("mqtt command queue full: left unacknowledged for redelivery on the next connection", "topic", m.Topic(), "size", len(p))
	}
}

// enqueue queues in unless the queue or its byte budget is full.
func (l *Link) enqueue(q chan inbound, queued *atomic.Int64, budget int64, in inbound) bool {
	n := int64(len(in.payload))
	if after := queued.Add(n); after > budget && after != n { // one message always fits an empty queue
		queued.Add(-n)
		return false
	}
	select {
	case q <- in:
		return true
	default:
		queued.Add(-n)
		return false
	}
}

func (l *Link) commandLoop(ctx context.Context) {
	resultTopic := "cmd/result"
	for {
		var in inbound
		select {
		case <-ctx.Done():
			return
		case in = <-l.cmds:
		}
		l.cmdBytes.Add(-int64(len(in.payload)))
		var res []byte
		switch {
		case in.oversized == 0:
			res = l.handle(ctx, in.payload)
		case l.cfg.Oversized != nil:
			res = l.cfg.Oversized(ctx, in.payload, in.oversized)
		}
		// The effect is committed (or refused): the broker may forget it.
		in.ack()
		if res == nil {
			continue
		}
		if err := l.publishResult(ctx, resultTopic, res); err != nil {
			l.log.Warn("mqtt command result not published", "topic", l.topic(resultTopic), "size", len(res), "err", err)
		}
	}
}

// publishResult publishes a command's result. A command the broker kept
// for the device arrives as soon as the connection is up, which can be a
// moment before Run has taken the session: the result then waits for it,
// up to resultWait, rather than be lost (a dead connection still fails
// after that).
func (l *Link) publishResult(ctx context.Context, topic string, res []byte) error {
	pctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	deadline := time.Now().Add(resultWait)
	for {
		err := l.Publish(pctx, topic, res, false)
		if !errors.Is(err, ErrNotConnected) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-pctx.Done():
			return err
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (l *Link) messageLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-l.msgs:
			l.msgBytes.Add(-int64(len(m.payload)))
			m.h(m.topic, m.payload)
			m.ack()
		}
	}
}

// stateLoop publishes the latest state whenever signalled. One goroutine
// and a coalescing signal keep state publishes in order: the last one sent
// always carries the latest state.
func (l *Link) stateLoop(ctx context.Context) {
	topic := l.topic("state")
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.stateDirty:
		}
		l.mu.Lock()
		sess, state := l.sess, l.state
		l.mu.Unlock()
		if sess == nil || state == nil {
			continue // published on the next connect
		}
		pctx, cancel := context.WithTimeout(ctx, opTimeout)
		err := l.publishOn(pctx, sess, topic, state, true)
		cancel()
		if err != nil {
			l.log.Warn("mqtt publish failed", "topic", topic, "size", len(state), "err", err)
		}
	}
}

func (l *Link) signalState() {
	select {
	case l.stateDirty <- struct{}{}:
	default: // already pending; it will read the latest state
	}
}

func (l *Link) setSession(sess *session) {
	l.mu.Lock()
	l.sess = sess
	f := l.onChange
	l.mu.Unlock()
	if f != nil {
		f(true)
	}
}

// clearSession forgets sess if it is still the current one.
func (l *Link) clearSession(sess *session) {
	l.mu.Lock()
	was := l.sess == sess
	if was {
		l.sess = nil
	}
	f := l.onChange
	l.mu.Unlock()
	if was && f != nil {
		f(false)
	}
}

// shutdown publishes retained "offline" (bounded) and disconnects cleanly.
func (l *Link) shutdown(sess *session) {
	l.clearSession(sess) // from now on Publish fails fast
	topic := l.topic("status")
	ctx, cancel := context.WithTimeout(context.Background(), offlineWait)
	defer cancel()
	// paho's Publish itself may block for the write timeout on a stalled
	// connection; the wait for it is offlineWait, like the wait for its ack.
	published := make(chan error, 1)
	go func() { published <- l.publishOn(ctx, sess, topic, []byte(statusOffline), true) }()
	var err error
	select {
	case err = <-published:
	case <-ctx.Done():
		err = fmt.Errorf("mqtt publish %s: %w", topic, ctx.Err())
	}
	if err != nil {
		l.log.Warn("mqtt publish failed", "topic", topic, "err", err)
	}
	sess.client.Disconnect(quiesceMillis)
	sess.end(nil)
	l.log.Info("mqtt disconnected", "broker", redact(l.cfg.Broker))
}

// SetState remembers the latest reported state and publishes it retained on
// aibo/{id}/state: now if connected (asynchronously, never blocking the
// caller), and again on every reconnect.
func (l *Link) SetState(state []byte) {
	cp := append([]byte{}, state...)
	l.mu.Lock()
	l.state = cp
	l.mu.Unlock()
	l.signalState()
}

// Publish publishes payload at QoS 1 on aibo/{id}/{topicSuffix} and waits
// for the broker's acknowledgement or ctx. Nothing is queued: when not
// connected it fails at once with ErrNotConnected, and a connection lost
// before the acknowledgement also yields ErrNotConnected (the message may
// or may not have reached the broker; delivery is at-least-once).
func (l *Link) Publish(ctx context.Context, topicSuffix string, payload []byte, retained bool) error {
	if topicSuffix == "" || strings.ContainsAny(topicSuffix, "+#") {
		return fmt.Errorf("mqtt: invalid topic suffix %q", topicSuffix)
	}
	l.mu.Lock()
	sess := l.sess
	l.mu.Unlock()
	topic := l.topic(topicSuffix)
	if sess == nil {
		return fmt.Errorf("mqtt publish %s: %w", topic, ErrNotConnected)
	}
	return l.publishOn(ctx, sess, topic, payload, retained)
}

// PublishEvent publishes an event on aibo/{id}/events (QoS 1, not retained).
func (l *Link) PublishEvent(ctx context.Context, event []byte) error {
	return l.Publish(ctx, "events", event, false)
}

func (l *Link) publishOn(ctx context.Context, sess *session, topic string, payload []byte, retained bool) error {
	if !sess.client.IsConnectionOpen() {
		return fmt.Errorf("mqtt publish %s: %w", topic, ErrNotConnected)
	}
	tok := sess.client.Publish(topic, 1, retained, payload)
	if err := waitToken(ctx, sess, tok); err != nil {
		return fmt.Errorf("mqtt publish %s: %w", topic, err)
	}
	return nil
}

// waitToken waits for tok, ctx, or the end of sess.
func waitToken(ctx context.Context, sess *session, tok mqtt.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-sess.over:
		select {
		case <-tok.Done():
			return tok.Error()
		default:
			return fmt.Errorf("%w: connection lost before acknowledgement", ErrNotConnected)
		}
	}
}

// Subscribe registers h for messages on aibo/{id}/{topicSuffix} (MQTT
// wildcards allowed, e.g. "artifacts/+/ack"). The topic is subscribed at
// QoS 1 on every connect, and right away if connected. h runs on one
// goroutine shared by all Subscribe handlers, in arrival order, and the
// message is acknowledged once h returns; h should return quickly (a full
// queue leaves messages unacknowledged, for the broker to deliver again on
// the next connection, rather than block MQTT).
// Registering the same suffix twice: the later handler wins.
func (l *Link) Subscribe(topicSuffix string, h func(topic string, payload []byte)) {
	if topicSuffix == "" || h == nil {
		l.log.Error("mqtt subscribe: empty topic suffix or nil handler", "topic_suffix", topicSuffix)
		return
	}
	s := subscription{suffix: topicSuffix, h: h}
	l.mu.Lock()
	l.subs = append(l.subs, s)
	sess := l.sess
	l.mu.Unlock()
	if sess == nil {
		return // subscribed on the next connect
	}
	tok := l.subscribeOn(sess, s)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if err := waitToken(ctx, sess, tok); err != nil {
			l.log.Warn("mqtt subscribe failed", "topic", l.topic(topicSuffix), "err", err)
		}
	}()
}

// Connected reports whether the link has an open MQTT connection.
func (l *Link) Connected() bool {
	l.mu.Lock()
	sess := l.sess
	l.mu.Unlock()
	return sess != nil && sess.client.IsConnectionOpen()
}

// OnConnectionChange sets a hook called with true after each connect and
// false after each disconnect (e.g. for metrics). Call it before Run; f runs
// on Run's goroutine and must not block.
func (l *Link) OnConnectionChange(f func(connected bool)) {
	l.mu.Lock()
	l.onChange = f
	l.mu.Unlock()
}

// smallSendBuffer sets sendBuffer on a socket paho dials.
func smallSendBuffer(_, _ string, c syscall.RawConn) error {
	var err error
	if cerr := c.Control(func(fd uintptr) {
		err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, sendBuffer)
	}); cerr != nil {
		return cerr
	}
	return err
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func redact(broker string) string {
	if u, err := url.Parse(broker); err == nil {
		return u.Redacted()
	}
	return "(unparsable broker URL)"
}
