package capture

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/store"
)

// TestP2_AClockMovedForwardGrantsNoEarlyDay (issue 22 item 2): only a
// clock set back used to be guarded; a spoofed time source could step
// the day forward and take 30 more photos each time. Within one boot, a
// wall clock moved forward starts no day early: the day waits until boot
// time reaches its midnight.
func TestP2_AClockMovedForwardGrantsNoEarlyDay(t *testing.T) {
	f := newFixture(t, true)
	f.run()
	f.drop(30, "day1-")
	f.waitEmpty()
	if c := f.today(); c.Day != "2026-11-22" || c.Admitted != 30 {
		t.Fatalf("day 1: %+v", c)
	}
	// The wall clock jumps a day forward, then a fortnight more; a minute
	// of real time passes each time.
	for i, step := range []time.Duration{24 * time.Hour, 14 * 24 * time.Hour} {
		f.pass(time.Minute)
		f.setClock(f.clock().Add(step))
		f.drop(3, "ahead"+string(rune('a'+i))+"-")
		f.waitEmpty()
		if c := f.today(); c.Day != "2026-11-22" || c.Admitted != 30 || c.OverCap != 3*(i+1) {
			t.Fatalf("after the clock moved %s forward: %+v, want the photos over the cap of 2026-11-22", step, c)
		}
	}
	// Real time reaches midnight (boot time catches up): a new day.
	f.pass(14*time.Hour - 2*time.Minute + time.Second)
	f.drop(2, "next-")
	f.waitEmpty()
	if c := f.today(); c.Day != "2026-11-23" || c.Admitted != 2 {
		t.Fatalf("once boot time reached midnight: %+v, want 2 admitted on 2026-11-23", c)
	}
}

// dayClock is a DayClock over two clocks the test moves.
type dayClock struct {
	mu   sync.Mutex
	wall time.Time
	boot time.Duration
	*DayClock
	st *store.Store
}

func newDayClock(t *testing.T, wall time.Time, loc *time.Location) *dayClock {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c := &dayClock{wall: wall, boot: time.Hour, st: st}
	c.DayClock = NewDayClock(c.wallNow, c.bootNow, loc)
	return c
}

func (c *dayClock) wallNow() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wall
}

func (c *dayClock) bootNow() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.boot
}

func (c *dayClock) pass(d time.Duration) {
	c.mu.Lock()
	c.wall, c.boot = c.wall.Add(d), c.boot+d
	c.mu.Unlock()
}

func (c *dayClock) step(d time.Duration) {
	c.mu.Lock()
	c.wall = c.wall.Add(d)
	c.mu.Unlock()
}

func (c *dayClock) day(t *testing.T) string {
	t.Helper()
	var d string
	c.st.View(func(tx *bolt.Tx) error { d = c.Day(tx); return nil })
	return d
}

// Promise P2, the edges of the day clock: a wall clock up to 10 minutes
// ahead of boot time (NTP slewing, drift) still starts the day at local
// midnight; days of 23 and 25 hours (daylight saving time) follow the
// wall clock; a day begun after a small lead does not let the next one
// start earlier still; a step back and forward again within the day
// starts nothing.
func TestP2_TheDayClocksEdges(t *testing.T) {
	t.Run("ten minutes ahead is tolerated", func(t *testing.T) {
		c := newDayClock(t, time.Date(2026, 11, 22, 23, 40, 0, 0, la), la)
		c.day(t)
		c.pass(10 * time.Minute)
		c.step(9 * time.Minute) // 23:59 by the wall clock
		c.pass(2 * time.Minute) // 00:01 by the wall, 23:52 by boot time
		if d := c.day(t); d != "2026-11-23" {
			t.Fatalf("a 9-minute lead: %s, want 2026-11-23", d)
		}
		// The new day is trusted afresh from the wall clock, and allows 10
		// minutes of its own, not more: 11 minutes more wait.
		c.pass(23*time.Hour + 49*time.Minute) // 23:50 on the 23rd
		c.step(11 * time.Minute)
		if d := c.day(t); d != "2026-11-23" {
			t.Fatalf("an 11-minute lead on the next day: %s, want 2026-11-23", d)
		}
		c.pass(10 * time.Minute)
		if d := c.day(t); d != "2026-11-24" {
			t.Fatalf("at midnight by boot time: %s", d)
		}
	})
	t.Run("eleven minutes ahead waits", func(t *testing.T) {
		c := newDayClock(t, time.Date(2026, 11, 22, 23, 40, 0, 0, la), la)
		c.day(t)
		c.step(21 * time.Minute) // 00:01 by the wall, 23:40 by boot
		if d := c.day(t); d != "2026-11-22" {
			t.Fatalf("an 21-minute step: %s, want 2026-11-22", d)
		}
		c.pass(20 * time.Minute)
		if d := c.day(t); d != "2026-11-23" {
			t.Fatalf("once boot time reached midnight: %s", d)
		}
	})
	t.Run("a day of 23 hours", func(t *testing.T) {
		c := newDayClock(t, time.Date(2026, 3, 8, 0, 0, 30, 0, la), la) // clocks go forward at 02:00
		c.day(t)
		c.pass(22*time.Hour + 59*time.Minute)
		if d := c.day(t); d != "2026-03-08" {
			t.Fatalf("after 22h59m: %s", d)
		}
		c.pass(time.Minute)
		if d := c.day(t); d != "2026-03-09" {
			t.Fatalf("after 23h: %s, want 2026-03-09", d)
		}
	})
	t.Run("a day of 25 hours", func(t *testing.T) {
		c := newDayClock(t, time.Date(2026, 11, 1, 0, 0, 30, 0, la), la) // clocks go back at 02:00
		c.day(t)
		c.pass(24 * time.Hour)
		if d := c.day(t); d != "2026-11-01" {
			t.Fatalf("after 24h: %s, want 2026-11-01 still", d)
		}
		c.pass(time.Hour)
		if d := c.day(t); d != "2026-11-02" {
			t.Fatalf("after 25h: %s", d)
		}
	})
	t.Run("behind at start with only the latest day recorded", func(t *testing.T) {
		// A store an older version wrote: the latest day, no trusted time.
		c := newDayClock(t, time.Date(2000, 1, 1, 0, 0, 0, 0, la), la)
		c.st.Update(func(tx *bolt.Tx) error { return writeDay(tx, DayCounts{Day: "2026-11-22", Admitted: 30}) })
		if d := c.day(t); d != "2026-11-22" {
			t.Fatalf("behind at start: %s", d)
		}
		c.pass(time.Minute)
		c.step(time.Date(2026, 11, 22, 18, 0, 0, 0, la).Sub(c.wallNow())) // NTP puts it right
		if d := c.day(t); d != "2026-11-22" {
			t.Fatalf("after the correction: %s", d)
		}
		c.pass(24*time.Hour - time.Minute) // boot time from the start of that day
		if d := c.day(t); d != "2026-11-23" {
			t.Fatalf("a day of boot time later: %s, want 2026-11-23 (not years)", d)
		}
	})
	t.Run("back and forward again", func(t *testing.T) {
		c := newDayClock(t, time.Date(2026, 11, 22, 12, 0, 0, 0, la), la)
		c.day(t)
		c.step(-48 * time.Hour)
		if d := c.day(t); d != "2026-11-22" {
			t.Fatalf("set back: %s", d)
		}
		c.pass(11*time.Hour + 55*time.Minute)
		c.step(48 * time.Hour) // 23:55, as boot time says too
		c.pass(4 * time.Minute)
		if d := c.day(t); d != "2026-11-22" {
			t.Fatalf("put right: %s", d)
		}
		c.pass(2 * time.Minute)
		if d := c.day(t); d != "2026-11-23" {
			t.Fatalf("at midnight: %s", d)
		}
	})
}

// Promise P2 across a restart: a clock set back at the start is guarded as
// before (the latest day counted stays), and a robot that boots with its
// clock behind and is then put right by NTP counts on boot time from the
// latest time it recorded: that correction starts no new day.
func TestP2_ACorrectionAfterBootingBehindStartsNoNewDay(t *testing.T) {
	f := newFixture(t, true)
	f.run()
	f.drop(30, "day1-") // 10:00 on 2026-11-22
	f.waitEmpty()
	f.stop()
	// Off for 8 hours; boots with the clock lost.
	f.reboot(time.Date(2026, 1, 1, 0, 0, 0, 0, la))
	f.restart()
	f.run()
	f.drop(2, "behind-")
	f.waitEmpty()
	if c := f.today(); c.Day != "2026-11-22" || c.OverCap != 2 {
		t.Fatalf("booted with the clock behind: %+v", c)
	}
	// NTP puts it right: 18:00, a minute after boot.
	f.pass(time.Minute)
	f.setClock(time.Date(2026, 11, 22, 18, 1, 0, 0, la))
	f.drop(2, "corrected-")
	f.waitEmpty()
	if c := f.today(); c.Day != "2026-11-22" || c.OverCap != 4 {
		t.Fatalf("after the correction: %+v, want still 2026-11-22", c)
	}
	// Boot time reaches midnight counted from 10:00 (14 hours): a new day.
	f.pass(14 * time.Hour)
	f.drop(1, "next-")
	f.waitEmpty()
	if c := f.today(); c.Day != "2026-11-23" || c.Admitted != 1 {
		t.Fatalf("14 hours of boot time later: %+v", c)
	}
}
