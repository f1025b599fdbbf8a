package testbroker

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// An external broker replaces Mosquitto when TEST_BROKER_URL is set (make
// test-rabbitmq sets it to a RabbitMQ node with the MQTT plugin). Every
// test then shares that broker; topics are per device id, so tests do not
// see each other. Outages are played with TEST_BROKER_STOP and
// TEST_BROKER_START, shell commands that stop and start the broker's
// listeners (rabbitmqctl stop_app / start_app); TEST_BROKER_LOG names its
// log file for failure messages; TEST_BROKER_MAX_PACKET_SIZE the largest
// packet it takes (unset: no bound, as RabbitMQ 3.10). StartTLS skips its test: the TLS listener
// is proved against Mosquitto (README, "A second broker").
const (
	envURL   = "TEST_BROKER_URL"
	envStop  = "TEST_BROKER_STOP"
	envStart = "TEST_BROKER_START"
	envLog   = "TEST_BROKER_LOG"
	envBound = "TEST_BROKER_MAX_PACKET_SIZE"
)

// External reports whether tests run against an external broker.
func External() bool { return os.Getenv(envURL) != "" }

func external(t testing.TB) *Broker {
	t.Helper()
	bound := 0
	if s := os.Getenv(envBound); s != "" {
		var err error
		if bound, err = strconv.Atoi(s); err != nil || bound < 0 {
			t.Fatalf("testbroker: %s=%q is not a size in bytes", envBound, s)
		}
	}
	b := Attach(t, os.Getenv(envURL), bound)
	// Whatever a test did to it, the next test finds it running.
	t.Cleanup(func() {
		if !b.Running() {
			b.runHook(envStart)
		}
	})
	return b
}

// Attach returns a Broker for one already running at url (tcp://host:port)
// that takes packets up to bound bytes (0: no bound), once it accepts
// connections. Its Stop and Restart run the TEST_BROKER_STOP and _START
// hooks, if any; it is otherwise left alone.
func Attach(t testing.TB, rawURL string, bound int) *Broker {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "tcp" {
		t.Fatalf("testbroker: %q is not tcp://host:port", rawURL)
	}
	port, _ := strconv.Atoi(u.Port())
	b := &Broker{URL: u.String(), Port: port, PacketBound: bound, ext: true}
	b.waitUp(t)
	return b
}

func (b *Broker) runHook(env string) {
	if cmd := os.Getenv(env); cmd != "" {
		out, err := exec.Command("sh", "-c", cmd).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "testbroker: %s (%s): %v\n%s", env, cmd, err, out)
		}
	}
}

func (b *Broker) addr() string {
	u, _ := url.Parse(b.URL)
	return u.Host
}

func (b *Broker) waitUp(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !b.Running() {
		if time.Now().After(deadline) {
			t.Fatalf("testbroker: external broker %s not accepting\n%s", b.URL, b.logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (b *Broker) extRunning() bool {
	c, err := net.DialTimeout("tcp", b.addr(), 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func (b *Broker) extStop() {
	b.runHook(envStop)
	for deadline := time.Now().Add(30 * time.Second); b.extRunning() && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
}

func (b *Broker) extLogs() string {
	p := os.Getenv(envLog)
	if p == "" {
		return ""
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	if len(data) > 20000 {
		data = data[len(data)-20000:]
	}
	return "--- " + p + " (tail) ---\n" + string(data)
}
