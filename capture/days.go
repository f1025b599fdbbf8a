package capture

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/aibo-privacy/aibo-privacyd/core/store"
)

// DayCounts are the photo counters of one local calendar day (contract
// section 5, photos_today).
type DayCounts struct {
	Day        string `json:"day"`
	Admitted   int    `json:"admitted"`
	Refused    int    `json:"refused"`
	OverCap    int    `json:"over_cap"`
	Invalid    int    `json:"invalid"`
	Uploaded   int    `json:"uploaded"`
	Deleted    int    `json:"deleted"`
	CapReached bool   `json:"-"`
	// Selected counts photos a selection queued for upload (acked or not),
	// so that keep_per_day holds across several selections in a day.
	Selected int `json:"-"`
	// Decided is set when a selection ran after the cap was reached or the
	// day ended: nothing of the day is left undecided.
	Decided bool `json:"-"`
}

// dayRecord is DayCounts as stored, with the fields state does not show.
type dayRecord struct {
	DayCounts
	CapReached bool `json:"cap_reached"`
	Selected   int  `json:"selected"`
	Decided    bool `json:"decided"`
}

var (
	keyLatestDay  = []byte("latest")
	keyLatestWall = []byte("latest_wall") // the latest trusted time an admission was recorded at (RFC 3339)
)

func dayKey(day string) []byte { return []byte("d/" + day) }

// LocalDay is the calendar day of t in loc.
func LocalDay(t time.Time, loc *time.Location) string { return t.In(loc).Format("2006-01-02") }

// MaxClockLead is how far the wall clock may run ahead of the boot clock
// since the current day began before the day clock stops trusting it
// (contract section 2, v3).
const MaxClockLead = 10 * time.Minute

// DayClock says which local calendar day the daily cap counts against. A
// clock is only as good as whoever sets it, so it uses two: the wall clock
// (which names days, and which NTP, a technician or a spoofed time source
// may step) and CLOCK_BOOTTIME (time since boot, suspend included, which
// nothing can set).
//
//   - Set back: the day never goes back; the latest day already counted is
//     kept in the store, across restarts too, so a clock set back cannot
//     grant a second set of photos for a day.
//   - Moved forward within one boot: since the day began, the wall clock
//     may run at most MaxClockLead ahead of the boot clock. Past that, the
//     day clock counts on boot time from where the day began, and the
//     next day starts when boot time reaches local midnight. A wall clock
//     stepped forward by a day therefore starts no new day early. When a
//     day begins, the clock is trusted afresh from there: the lead allowed
//     is 10 minutes a day, never more.
//   - At start the wall clock is trusted, but never below the latest
//     trusted time recorded (at admissions, and by the daemon hourly) nor
//     the start of the latest day counted: a robot that boots with its
//     clock behind and is then corrected by NTP counts on boot time from
//     there (that correction is the one step that starts no new day).
//   - Days of 23 or 25 hours (daylight saving time) follow the wall clock:
//     days are local calendar days of Location.
type DayClock struct {
	wall func() time.Time
	boot func() time.Duration
	loc  *time.Location

	mu       sync.Mutex
	anchored bool
	wall0    time.Time     // the trusted wall time when the current day began
	boot0    time.Duration // the boot clock then
	day      string        // the day the clock counts against (never goes back)
	trusted  time.Time     // the last trusted time computed
	lead     time.Duration // how far the wall clock is ahead of boot time since the day began
}

// NewDayClock returns a day clock over wall and boot (nil: time.Now and
// BootTime) in loc (nil: UTC).
func NewDayClock(wall func() time.Time, boot func() time.Duration, loc *time.Location) *DayClock {
	if wall == nil {
		wall = time.Now
	}
	if boot == nil {
		boot = BootTime
	}
	if loc == nil {
		loc = time.UTC
	}
	return &DayClock{wall: wall, boot: boot, loc: loc}
}

// BootTime reads CLOCK_BOOTTIME: the time since the system booted,
// suspend included. No one can set it.
func BootTime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		panic("capture: CLOCK_BOOTTIME unreadable: " + err.Error()) // Linux has had it since 2.6.39
	}
	return time.Duration(ts.Nano())
}

// Day is the day the cap counts against now, in tx.
func (c *DayClock) Day(tx *bolt.Tx) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, b := c.wall(), c.boot()
	latest := string(tx.Bucket(store.BucketDays).Get(keyLatestDay))
	if !c.anchored {
		c.wall0, c.boot0, c.anchored = w, b, true
		// Real time is at least the latest trusted time recorded, and the
		// start of the latest day counted: a clock behind them at start is
		// anchored there.
		if hw, err := time.Parse(time.RFC3339Nano, string(tx.Bucket(store.BucketDays).Get(keyLatestWall))); err == nil && hw.After(c.wall0) {
			c.wall0 = hw
		}
		if d, err := time.ParseInLocation("2006-01-02", latest, c.loc); err == nil && d.After(c.wall0) {
			c.wall0 = d
		}
		c.day = max(LocalDay(c.wall0, c.loc), latest)
	}
	base := c.wall0.Add(b - c.boot0)
	t := w
	c.lead = w.Sub(base)
	if c.lead > MaxClockLead {
		t = base // stepped forward: the day waits for boot time
	}
	c.trusted = t
	d := max(LocalDay(t, c.loc), latest, c.day)
	if d > c.day {
		// A new day began: trusted afresh from here.
		c.day, c.wall0, c.boot0 = d, t, b
	}
	return c.day
}

// Today returns the counters of the current day.
func (c *DayClock) Today(tx *bolt.Tx) (DayCounts, error) { return ReadDay(tx, c.Day(tx)) }

// Lead is how far the wall clock ran ahead of the boot clock since the
// current day began, as of the last Day; over MaxClockLead the day waits
// for boot time.
func (c *DayClock) Lead() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lead
}

// RecordTx records, in tx, the trusted time of the last Day, so that a
// start with the clock behind counts from no earlier. Every admission
// records it; the daemon also does now and then.
func (c *DayClock) RecordTx(tx *bolt.Tx) error {
	c.mu.Lock()
	t := c.trusted
	c.mu.Unlock()
	if t.IsZero() {
		return nil
	}
	b := tx.Bucket(store.BucketDays)
	if hw, err := time.Parse(time.RFC3339Nano, string(b.Get(keyLatestWall))); err == nil && !t.After(hw) {
		return nil
	}
	return b.Put(keyLatestWall, []byte(t.UTC().Format(time.RFC3339Nano)))
}

// ReadDay returns the counters of day (zero when nothing happened yet).
func ReadDay(tx *bolt.Tx, day string) (DayCounts, error) {
	c := DayCounts{Day: day}
	raw := tx.Bucket(store.BucketDays).Get(dayKey(day))
	if raw == nil {
		return c, nil
	}
	var r dayRecord
	if err := json.Unmarshal(raw, &r); err != nil {
		return c, fmt.Errorf("day %s counters unreadable: %w", day, err)
	}
	c = r.DayCounts
	c.CapReached, c.Selected, c.Decided = r.CapReached, r.Selected, r.Decided
	return c, nil
}

// writeDay stores the counters and moves the latest-day mark forward.
func writeDay(tx *bolt.Tx, c DayCounts) error {
	b := tx.Bucket(store.BucketDays)
	raw, err := json.Marshal(dayRecord{DayCounts: c, CapReached: c.CapReached, Selected: c.Selected, Decided: c.Decided})
	if err != nil {
		return err
	}
	if err := b.Put(dayKey(c.Day), raw); err != nil {
		return err
	}
	if string(b.Get(keyLatestDay)) < c.Day {
		return b.Put(keyLatestDay, []byte(c.Day))
	}
	return nil
}

// AddDeleted counts admitted photos of day erased by selection, by auto_photo
// switched off or by delete_data.
func AddDeleted(tx *bolt.Tx, day string, n int) error {
	c, err := ReadDay(tx, day)
	if err != nil {
		return err
	}
	c.Deleted += n
	return writeDay(tx, c)
}

// UploadedTx counts, in the transaction that forgets it, a photo of day
// the cloud acknowledged.
func UploadedTx(tx *bolt.Tx, day string) error {
	c, err := ReadDay(tx, day)
	if err != nil {
		return err
	}
	c.Uploaded++
	return writeDay(tx, c)
}

// UnsentTx counts, in the transaction that drops it, a queued photo of day
// that will never be uploaded (auto_photo off, delete_data, a withdrawn
// consent): every admitted photo ends uploaded or deleted.
func UnsentTx(tx *bolt.Tx, day string) error { return AddDeleted(tx, day, 1) }
