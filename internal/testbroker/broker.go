// Package testbroker runs a real Mosquitto broker for tests (no mocks), plus
// a small MQTT client that plays the cloud or the companion app.
//
// A test that needs a broker calls Start (plain TCP) or StartTLS (TLS with
// client certificates). The broker listens on 127.0.0.1 on a free port, lives
// in t.TempDir() and is stopped by t.Cleanup. A missing mosquitto binary
// fails the test; it is never skipped.
package testbroker

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	startTimeout = 5 * time.Second
	stopTimeout  = 5 * time.Second
)

// MaxPacketSize is the max_packet_size of every broker this package
// starts, the same as configs/mosquitto-dev.conf.
const MaxPacketSize = 1<<20 + 1<<10

// Broker is a running (or stopped) Mosquitto instance.
type Broker struct {
	// URL is tcp://127.0.0.1:PORT, or ssl://127.0.0.1:PORT for StartTLS.
	URL  string
	Port int

	// PacketBound is the largest MQTT packet the broker takes: MaxPacketSize
	// for the Mosquitto started here; for an external broker what
	// TEST_BROKER_MAX_PACKET_SIZE says, 0 when it bounds nothing
	// (RabbitMQ 3.10's MQTT plugin has no packet-size limit).
	PacketBound int

	// Client credentials and the CA that signed the broker's certificate,
	// as PEM files; set by StartTLS only.
	CAFile, CertFile, KeyFile string

	dir     string
	conf    string
	logFile string
	bin     string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	ext  bool          // an external broker (external.go)
}

// Start runs a plain-TCP Mosquitto on 127.0.0.1 with anonymous access.
func Start(t testing.TB) *Broker {
	t.Helper()
	if External() {
		return external(t)
	}
	b := newBroker(t)
	b.URL = fmt.Sprintf("tcp://127.0.0.1:%d", b.Port)
	b.writeConf(t, "")
	b.start(t)
	t.Cleanup(b.Stop)
	return b
}

// StartTLS runs Mosquitto with a TLS listener on 127.0.0.1 that requires a
// client certificate. A CA, a server certificate (IP SAN 127.0.0.1) and a
// client certificate are generated for the test; the client's files are in
// CAFile, CertFile and KeyFile.
func StartTLS(t testing.TB) *Broker {
	t.Helper()
	if External() {
		t.Skip("testbroker: TLS runs against Mosquitto only; this run uses " + os.Getenv(envURL))
	}
	b := newBroker(t)
	b.URL = fmt.Sprintf("ssl://127.0.0.1:%d", b.Port)
	pki := generatePKI(t, b.dir)
	b.CAFile, b.CertFile, b.KeyFile = pki.caFile, pki.clientCert, pki.clientKey
	b.writeConf(t, fmt.Sprintf("cafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\n",
		pki.caFile, pki.serverCert, pki.serverKey))
	b.start(t)
	t.Cleanup(b.Stop)
	return b
}

func newBroker(t testing.TB) *Broker {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto"
		if _, serr := os.Stat(bin); serr != nil {
			t.Fatalf("testbroker: mosquitto not found in PATH (%v) nor at %s (%v); install the mosquitto package", err, bin, serr)
		}
	}
	dir := t.TempDir()
	return &Broker{
		PacketBound: MaxPacketSize,
		Port:        freePort(t),
		dir:         dir,
		conf:        filepath.Join(dir, "mosquitto.conf"),
		logFile:     filepath.Join(dir, "mosquitto.log"),
		bin:         bin,
	}
}

// FreePort returns a loopback TCP port nothing listens on now.
func FreePort(t testing.TB) int {
	t.Helper()
	return freePort(t)
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testbroker: find free port: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		t.Fatalf("testbroker: close probe listener: %v", err)
	}
	return port
}

func (b *Broker) writeConf(t testing.TB, listenerExtra string) {
	t.Helper()
	var sb strings.Builder
	// When run as root, mosquitto drops privileges to the "mosquitto" user,
	// which cannot read the test's temp dir; stay as the current user.
	if u, err := user.Current(); err == nil {
		fmt.Fprintf(&sb, "user %s\n", u.Username)
	}
	sb.WriteString("persistence false\n")
	fmt.Fprintf(&sb, "log_dest file %s\n", b.logFile)
	sb.WriteString("log_type error\nlog_type warning\nlog_type notice\nlog_type information\n")
	sb.WriteString("connection_messages true\n")
	sb.WriteString("allow_anonymous true\n")
	// Like a cloud broker tuned for small QoS 1 messages: no Nagle delay.
	sb.WriteString("set_tcp_nodelay true\n")
	// As configs/mosquitto-dev.conf: no packet over 1 MiB + 1 KiB reaches
	// the daemon (paho allocates what a packet announces).
	fmt.Fprintf(&sb, "max_packet_size %d\n", MaxPacketSize)
	fmt.Fprintf(&sb, "listener %d 127.0.0.1\n", b.Port)
	sb.WriteString(listenerExtra)
	if err := os.WriteFile(b.conf, []byte(sb.String()), 0o600); err != nil {
		t.Fatalf("testbroker: write config: %v", err)
	}
}

// start launches mosquitto and waits until the port accepts TCP.
func (b *Broker) start(t testing.TB) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	cmd := exec.Command(b.bin, "-c", b.conf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := os.OpenFile(filepath.Join(b.dir, "mosquitto.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("testbroker: open output file: %v", err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("testbroker: start %s: %v", b.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		out.Close()
		close(done)
	}()
	b.cmd, b.done = cmd, done

	addr := fmt.Sprintf("127.0.0.1:%d", b.Port)
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-done:
			b.cmd = nil
			t.Fatalf("testbroker: mosquitto exited during startup (%v)\n%s", cmd.ProcessState, b.logs())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			b.signalAndWait(syscall.SIGKILL)
			t.Fatalf("testbroker: mosquitto did not accept on %s within %v: %v\n%s", addr, startTimeout, err, b.logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop sends SIGTERM and waits for the broker to exit (SIGKILL after 5 s).
// It is safe to call more than once and on a stopped broker.
func (b *Broker) Stop() {
	if b.ext {
		b.extStop()
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.signalAndWait(syscall.SIGTERM)
}

// Kill stops the broker abruptly with SIGKILL and waits for it to exit.
func (b *Broker) Kill() {
	if b.ext {
		b.extStop()
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.signalAndWait(syscall.SIGKILL)
}

// Restart starts the broker again on the same port (stopping it first if it
// is still running). Retained messages are not kept: persistence is off.
func (b *Broker) Restart(t testing.TB) {
	t.Helper()
	if b.ext {
		b.extStop()
		b.runHook(envStart)
		b.waitUp(t)
		return
	}
	b.Stop()
	b.start(t)
}

// Running reports whether the mosquitto process is alive.
func (b *Broker) Running() bool {
	if b.ext {
		return b.extRunning()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil {
		return false
	}
	select {
	case <-b.done:
		return false
	default:
		return true
	}
}

// Logs returns the broker's log file, for failure messages.
func (b *Broker) Logs() string { return b.logs() }

// signalAndWait requires b.mu held.
func (b *Broker) signalAndWait(sig syscall.Signal) {
	if b.cmd == nil {
		return
	}
	cmd, done := b.cmd, b.done
	b.cmd, b.done = nil, nil
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		_ = cmd.Process.Kill()
	}
	select {
	case <-done:
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		<-done
	}
}

func (b *Broker) logs() string {
	if b.ext {
		return b.extLogs()
	}
	var sb strings.Builder
	for _, name := range []string{"mosquitto.log", "mosquitto.out"} {
		data, err := os.ReadFile(filepath.Join(b.dir, name))
		if err == nil && len(data) > 0 {
			fmt.Fprintf(&sb, "--- %s ---\n%s", name, data)
		}
	}
	return sb.String()
}
