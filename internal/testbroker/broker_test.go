package testbroker

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

func roundtrip(t *testing.T, b *Broker) {
	t.Helper()
	sub := b.Client(t).Subscribe(t, "test/#")
	pub := b.Client(t)
	pub.Publish(t, "test/a", []byte("one"), false)
	pub.Publish(t, "test/b", []byte("two"), true)

	m := sub.Next(t, 5*time.Second)
	if m.Topic != "test/a" || string(m.Payload) != "one" || m.Retained {
		t.Fatalf("first message = %+v", m)
	}
	m = sub.WaitFor(t, 5*time.Second, func(m Message) bool { return m.Topic == "test/b" })
	if string(m.Payload) != "two" {
		t.Fatalf("second message = %+v", m)
	}
	if n := len(sub.All()); n != 2 {
		t.Fatalf("All() has %d messages, want 2", n)
	}

	// A late subscriber gets the retained message with the retain flag.
	late := b.Client(t).Subscribe(t, "test/b")
	m = late.Next(t, 5*time.Second)
	if !m.Retained || string(m.Payload) != "two" {
		t.Fatalf("retained message = %+v", m)
	}
}

func TestPlainRoundtrip(t *testing.T) {
	roundtrip(t, Start(t))
}

func TestTLSRoundtrip(t *testing.T) {
	roundtrip(t, StartTLS(t))
}

func TestRestartSamePort(t *testing.T) {
	b := Start(t)
	url := b.URL
	b.Stop()
	if b.Running() {
		t.Fatal("broker still running after Stop")
	}
	b.Restart(t)
	if b.URL != url || !b.Running() {
		t.Fatalf("after restart: url %s running %v", b.URL, b.Running())
	}
	roundtrip(t, b)
}

func TestTLSRefusesClientWithoutCertificate(t *testing.T) {
	b := StartTLS(t)
	pemCA, err := os.ReadFile(b.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemCA)
	opts := mqtt.NewClientOptions().
		AddBroker(b.URL).
		SetClientID("no-cert").
		SetAutoReconnect(false).
		SetConnectTimeout(3 * time.Second).
		SetTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	c := mqtt.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatal("connect did not complete")
	}
	if tok.Error() == nil {
		c.Disconnect(0)
		t.Fatal("client without certificate was accepted by the TLS broker")
	}
}
