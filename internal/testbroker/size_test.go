package testbroker

import (
	"fmt"
	"os"
	"regexp"
	"testing"
	"time"
)

// TestP16_BrokerRefusesOversizedPackets: every broker configuration we
// ship bounds inbound packets, and the bound holds (paho on the daemon
// would otherwise allocate whatever a packet announces).
func TestP16_BrokerRefusesOversizedPackets(t *testing.T) {
	conf, err := os.ReadFile("../../configs/mosquitto-dev.conf")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^max_packet_size (\d+)$`).FindSubmatch(conf)
	if m == nil || string(m[1]) != fmt.Sprint(MaxPacketSize) {
		t.Fatalf("configs/mosquitto-dev.conf sets max_packet_size %q, the test broker %d", m, MaxPacketSize)
	}

	b := Start(t)
	sub := b.Client(t).Subscribe(t, "size/#")
	pub := b.Client(t)
	pub.Publish(t, "size/ok", make([]byte, 1<<20), false) // a 1 MiB payload fits
	if got := sub.Next(t, 5*time.Second); got.Topic != "size/ok" {
		t.Fatalf("got %s", got.Topic)
	}
	// One over the bound: the broker drops the publisher, nothing arrives.
	tok := pub.c.Publish("size/big", 1, false, make([]byte, MaxPacketSize))
	tok.WaitTimeout(2 * time.Second)
	time.Sleep(300 * time.Millisecond)
	for _, m := range sub.All() {
		if m.Topic == "size/big" {
			t.Fatal("an oversized packet went through the broker")
		}
	}
}
