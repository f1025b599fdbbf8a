package agent

import (
	"strings"
	"testing"
	"time"
)

// Promise P2, as a technician sees it: the self-test's clock check turns
// red when the wall clock ran ahead of the boot clock by more than the day
// clock allows (the photo day then waits for boot time), and says so.
func TestP2_TheClockCheckSaysWhenTheDayWaitsForBootTime(t *testing.T) {
	dv := newDevice(t, "")
	boot := time.Hour
	dv.d.boot = func() time.Duration { return boot }
	if c := dv.d.tech.clockCheck(); !c.OK {
		t.Fatalf("clock check with both clocks agreeing: %+v", c)
	}
	dv.setNow(dv.clock().Add(9 * time.Minute)) // within the lead a day allows
	if c := dv.d.tech.clockCheck(); !c.OK {
		t.Fatalf("9 minutes ahead: %+v", c)
	}
	dv.setNow(dv.clock().Add(24 * time.Hour))
	c := dv.d.tech.clockCheck()
	if c.OK || !strings.Contains(c.Detail, "ahead of the boot clock") || !strings.Contains(c.Detail, "2026-11-22") {
		t.Fatalf("a day ahead: %+v", c)
	}
}
