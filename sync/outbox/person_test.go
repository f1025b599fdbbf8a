package outbox

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/keys"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// ringEnv is an outbox with a keyring for person-linked artifacts.
func ringEnv(t *testing.T) (*env, *Outbox, *keys.Keyring) {
	e := newEnv(t)
	ring, err := keys.OpenKeyring(filepath.Join(filepath.Dir(e.dir), "people.keys"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ring.Close() })
	o := e.open(func(c *Config) { c.Keyring = ring })
	return e, o, ring
}

func enqueuePerson(t *testing.T, o *Outbox, kind policy.Kind, subject string, slot uint32, attrs map[string]any) Meta {
	t.Helper()
	m, err := o.Enqueue(context.Background(), Artifact{Kind: kind, SubjectID: subject, Slot: &slot, Attrs: attrs,
		ContentType: "application/json", Content: []byte(`{"subject_id":"` + subject + `","confidence":0.913}`)})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Promise P5: a person-linked artifact's whole record (subject, times,
// attrs, content key) is sealed by the person's slot; nothing of it is in
// clear in the store file, and once the slot is erased no copy opens.
func TestP5_PersonLinkedRecordsAreSealedWhole(t *testing.T) {
	e, o, ring := ringEnv(t)
	slot, _, err := ring.Alloc()
	if err != nil {
		t.Fatal(err)
	}
	m := enqueuePerson(t, o, policy.KindSighting, "zelda-42", slot, map[string]any{"time": "2026-10-13T03:04:05Z"})
	e.closeStore()
	raw, _ := os.ReadFile(e.dbPath)
	for _, clearText := range []string{"zelda-42", "2026-10-13T03:04:05", "0.913", `"sighting"`} {
		if bytes.Contains(raw, []byte(clearText)) {
			t.Errorf("the store file holds %q in clear", clearText)
		}
	}
	e.openStore()
	// It reopens (the record opens with the slot's key) and publishes as
	// it was queued.
	o2 := e.open(func(c *Config) { c.Keyring = ring })
	got := o2.List()
	if len(got) != 1 || got[0].ID != m.ID || got[0].SubjectID != "zelda-42" || got[0].Attrs["time"] != "2026-10-13T03:04:05Z" {
		t.Fatalf("reopened %+v", got)
	}
	if content := loadAll(t, o2, m.ID); !bytes.Contains(content, []byte("zelda-42")) {
		t.Fatalf("content %q", content)
	}
}

// DropSlotTx finds a person's artifacts through the store's slot index in
// the caller's transaction, by kind, and leaves everyone else's.
func TestDropSlotTxDropsOnePersonsKinds(t *testing.T) {
	e, o, ring := ringEnv(t)
	ana, _, _ := ring.Alloc()
	bob, _, _ := ring.Alloc()
	s1 := enqueuePerson(t, o, policy.KindSighting, "ana", ana, nil)
	b1 := enqueuePerson(t, o, policy.KindFaceTemplate, "ana", ana, nil)
	s2 := enqueuePerson(t, o, policy.KindSighting, "bob", bob, nil)
	photo := enqueue(t, o, policy.KindPhoto, randBytes(100))
	var after func()
	err := e.st.Update(func(tx *bolt.Tx) error {
		var dropped []Meta
		var err error
		after, dropped, err = o.DropSlotTx(tx, ana, []policy.Kind{policy.KindSighting}, time.Time{}, "delete_data")
		if err != nil || len(dropped) != 1 || dropped[0].ID != s1.ID {
			t.Fatalf("dropped %+v %v", dropped, err)
		}
		if n, _ := o.SlotCountTx(tx, ana); n != 1 {
			t.Errorf("%d of ana's left, want her backup", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	after()
	ids := map[string]bool{}
	for _, m := range o.List() {
		ids[m.ID] = true
	}
	if ids[s1.ID] || !ids[b1.ID] || !ids[s2.ID] || !ids[photo.ID] {
		t.Fatalf("queued after the drop: %v", ids)
	}
	e.waitDropped(s1.ID)
}

// ResealSlotTx moves a person's records to a new slot: once the old slot
// is erased, what a freed page keeps of the old records opens with no key
// in the keyring, while the records kept still publish.
func TestP5_ResealSlotTxLeavesOldCopiesUnopenable(t *testing.T) {
	e, o, ring := ringEnv(t)
	from, _, _ := ring.Alloc()
	m := enqueuePerson(t, o, policy.KindFaceTemplate, "ana", from, nil)
	var oldCopy []byte
	e.st.View(func(tx *bolt.Tx) error {
		b, _ := buckets(tx)
		oldCopy = bytes.Clone(b.arts.Get([]byte(m.ID)))
		return nil
	})
	to, _, _ := ring.Alloc()
	err := e.st.Update(func(tx *bolt.Tx) error {
		n, err := o.ResealSlotTx(tx, from, to)
		if n != 1 {
			t.Errorf("resealed %d", n)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := ring.Erase(from); err != nil {
		t.Fatal(err)
	}
	if _, err := o.decodeRecord(m.ID, oldCopy); !errors.Is(err, errSealed) {
		t.Fatalf("the old copy of the record: %v", err)
	}
	if content := loadAll(t, o, m.ID); content == nil {
		t.Fatal("the record kept does not open")
	}
	e.st.View(func(tx *bolt.Tx) error {
		if n, _ := o.SlotCountTx(tx, to); n != 1 {
			t.Errorf("%d under the new slot", n)
		}
		if n, _ := o.SlotCountTx(tx, from); n != 0 {
			t.Errorf("%d still under the old slot", n)
		}
		return nil
	})
}

// DropTx reads the store, not the in-memory index: an artifact whose
// commit hook has not yet added it to the index is dropped all the same.
func TestDropTxSeesAnArtifactItsCommitHookHasNotIndexedYet(t *testing.T) {
	e := newEnv(t)
	o := e.open(nil)
	p, err := o.Prepare(Artifact{Kind: policy.KindPhoto, Content: randBytes(100)})
	if err != nil {
		t.Fatal(err)
	}
	err = e.st.Update(func(tx *bolt.Tx) error {
		rec := p.rec
		return o.putTx(tx, &rec, p.inline) // committed, never indexed in memory
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(o.List()) != 0 {
		t.Fatal("set-up: the artifact is in the index")
	}
	err = e.st.Update(func(tx *bolt.Tx) error {
		after, err := o.DropTx(tx, func(m Meta) bool { return m.Kind == policy.KindPhoto }, "auto_photo_off")
		if err == nil {
			tx.OnCommit(after)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if a, c := e.records(t); a != 0 || c != 0 {
		t.Fatalf("%d records, %d contents left", a, c)
	}
}

// An artifact MaySend holds (a policy pause) waits without holding up the
// ones behind it.
func TestAHeldArtifactDoesNotBlockTheQueue(t *testing.T) {
	b := testbroker.Start(t)
	e := newEnv(t)
	var held atomic.Value
	held.Store("")
	o := e.open(func(c *Config) {
		c.MaySend = func(m Meta) policy.Verdict {
			if m.ID == held.Load().(string) {
				return policy.Hold
			}
			return policy.Send
		}
	})
	cl := newCloud(t, b)
	cl.autoAck(`{"ok":true}`)
	l, _ := startLink(t, b)
	first := enqueue(t, o, policy.KindUsage, randBytes(100))
	held.Store(first.ID)
	var rest []Meta
	for range 3 {
		rest = append(rest, enqueue(t, o, policy.KindUsage, randBytes(100)))
	}
	runOutbox(t, o, l)
	for _, m := range rest {
		e.waitAcked(m.ID)
	}
	if msgs := cl.messages(first.ID); len(msgs) != 0 {
		t.Fatalf("the held artifact was published: %d messages", len(msgs))
	}
	held.Store("")
	t0 := time.Now()
	o.Wake()
	e.waitAcked(first.ID)
	if d := time.Since(t0); d >= HoldRetry {
		t.Fatalf("the held artifact went %v after Wake, not at once", d)
	}
}

// AckedTx and DroppedTx run inside the transactions that forget an
// artifact, with its metadata.
func TestAckedTxAndDroppedTxRunInTheForgettingTransaction(t *testing.T) {
	e := newEnv(t)
	var dropped []string
	o := e.open(func(c *Config) {
		c.DroppedTx = func(tx *bolt.Tx, m Meta, reason string) error {
			if !tx.Writable() {
				t.Error("DroppedTx outside a write transaction")
			}
			day, _ := m.Attrs["day"].(string)
			dropped = append(dropped, day+":"+reason)
			return nil
		}
	})
	m, err := o.Enqueue(context.Background(), Artifact{Kind: policy.KindPhoto, Content: randBytes(10), Attrs: map[string]any{"day": "2026-11-22"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Drop(func(x Meta) bool { return x.ID == m.ID }, "delete_data"); err != nil {
		t.Fatal(err)
	}
	if len(dropped) != 1 || dropped[0] != "2026-11-22:delete_data" {
		t.Fatalf("DroppedTx saw %v", dropped)
	}
}
