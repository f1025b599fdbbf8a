package capture

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

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

var keyLatestDay = []byte("latest")

func dayKey(day string) []byte { return []byte("d/" + day) }

// LocalDay is the calendar day of t in loc.
func LocalDay(t time.Time, loc *time.Location) string { return t.In(loc).Format("2006-01-02") }

// CurrentDay is the day the cap counts against now. It never goes back: a
// wall clock set back keeps counting against the latest day already seen, so
// it cannot grant a second set of photos for a day.
func CurrentDay(tx *bolt.Tx, now time.Time, loc *time.Location) string {
	d := LocalDay(now, loc)
	if latest := string(tx.Bucket(store.BucketDays).Get(keyLatestDay)); latest > d {
		return latest
	}
	return d
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

// Today returns the counters of the current day.
func Today(tx *bolt.Tx, now time.Time, loc *time.Location) (DayCounts, error) {
	return ReadDay(tx, CurrentDay(tx, now, loc))
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
