package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/config"
	"github.com/aibo-privacy/aibo-privacyd/core/keys"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
	"github.com/aibo-privacy/aibo-privacyd/facerec"
)

// device is a daemon built over a data directory in t.TempDir(), driven
// through its command dispatcher and services' transactions (no broker:
// what leaves is checked in the store).
type device struct {
	t       *testing.T
	d       *Daemon
	dataDir string
	mu      sync.Mutex
	now     time.Time // the device's wall clock: set it with setNow while services run
	seq     int
	signer  ed25519.PrivateKey // set: the device takes signed commands only (newSignedDevice)
}

func (dv *device) clock() time.Time {
	dv.mu.Lock()
	defer dv.mu.Unlock()
	return dv.now
}

func (dv *device) setNow(t time.Time) {
	dv.mu.Lock()
	dv.now = t
	dv.mu.Unlock()
}

func newDevice(t *testing.T, dataDir string) *device { return newDeviceWith(t, dataDir, "") }

func newDeviceWith(t *testing.T, dataDir, extraConfig string) *device {
	t.Helper()
	if !strings.HasPrefix(newRecognizer().Model(), "test-") {
		old := newRecognizer
		newRecognizer = func() facerec.Recognizer { return testModel{} }
		t.Cleanup(func() { newRecognizer = old })
	}
	if dataDir == "" {
		dataDir = filepath.Join(t.TempDir(), "data")
	}
	sock, err := os.MkdirTemp("", "aibo-agent")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sock) })
	cfg, err := config.Parse([]byte(fmt.Sprintf("device_id: aibo-0001\ndata_dir: %s\nspool_dir: %s\nmqtt:\n  broker: tcp://127.0.0.1:1\ndiag:\n  socket: %s\n%s%s",
		dataDir, filepath.Join(filepath.Dir(dataDir), "spool"), filepath.Join(sock, "d.sock"), visionConfig(t), extraConfig)))
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	dv := &device{t: t, d: d, dataDir: dataDir, now: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
	d.now = dv.clock
	t.Cleanup(dv.close)
	return dv
}

func (dv *device) close() {
	if dv.d != nil {
		dv.d.ring.Close()
		dv.d.data.Close()
		dv.d.st.Close()
		dv.d = nil
	}
}

type answer struct {
	ID     string `json:"id"`
	OK     bool   `json:"ok"`
	Error  *struct{ Code string }
	Result json.RawMessage `json:"result"`
}

// cmd runs one command and fails the test unless it succeeds.
func (dv *device) cmd(typ string, payload any) answer {
	dv.t.Helper()
	a := dv.try(typ, payload)
	if !a.OK {
		dv.t.Fatalf("%s refused: %+v", typ, a.Error)
	}
	return a
}

func (dv *device) try(typ string, payload any) answer {
	dv.t.Helper()
	dv.seq++
	raw, _ := json.Marshal(map[string]any{"id": fmt.Sprintf("c%d", dv.seq), "type": typ, "payload": payload})
	if dv.signer != nil { // signed now
		return dv.send(dv.signed(fmt.Sprintf("c%d", dv.seq), typ, dv.clock(), payload))
	}
	return dv.send(raw)
}

// send hands raw bytes to the dispatcher, as the link does.
func (dv *device) send(raw []byte) answer {
	dv.t.Helper()
	var a answer
	if err := json.Unmarshal(dv.d.disp.Handle(context.Background(), raw), &a); err != nil {
		dv.t.Fatal(err)
	}
	return a
}

// Distinctive sighting times: they must never appear in clear in the
// store file.
var (
	oldSighting = time.Date(2026, 10, 13, 3, 4, 5, 0, time.UTC) // 40 days before now
	newSighting = time.Date(2026, 11, 22, 11, 6, 7, 0, time.UTC)
)

// people sets the household up: ana and bob consent to recognition (ana
// to cloud backup too), both are enrolled, both were seen 40 days and an
// hour ago, and their sightings and ana's template backup wait in the
// outbox.
func (dv *device) people() {
	dv.t.Helper()
	dv.cmd("accept_policy", map[string]any{"version": "v1"})
	dv.cmd("set_features", map[string]any{"patrol": true, "cloud_backup": true, "auto_photo": true})
	dv.cmd("grant_consent", map[string]any{"subject_id": "ana", "display_name": "Anastasia Quux", "birthday": "04-05", "granted_by": "self", "scopes": []string{"face_recognition", "cloud_backup"}})
	dv.cmd("grant_consent", map[string]any{"subject_id": "bob", "display_name": "Bob", "granted_by": "self", "scopes": []string{"face_recognition"}})
	err := dv.d.st.Update(func(tx *bolt.Tx) error {
		for _, s := range []string{"ana", "bob"} {
			samples := [][]byte{[]byte("sample-1-" + s), []byte("sample-2-" + s)}
			slot, err := dv.d.faces.StoreTemplatesTx(tx, s, samples)
			if err != nil {
				return err
			}
			if err := dv.d.templateBackupTx(tx, s, slot, samples); err != nil {
				return err
			}
			for _, at := range []time.Time{oldSighting, newSighting} {
				if _, err := dv.d.faces.RecordSightingTx(tx, s, at, 0.9); err != nil {
					return err
				}
				if err := dv.d.sightingTx(tx, s, slot, at, 0.9); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		dv.t.Fatal(err)
	}
}

// record is one sealed value of the store, as a freed page may keep it
// after it is deleted or replaced: what it is, whose, and how to open it.
type record struct {
	what    string // consent, template, sighting_old, sighting_new, queued_sighting, queued_backup
	subject string
	sealed  []byte
	aad     []byte
}

// records reads every person's sealed value from the store, opening each
// with the keys on the device now to learn what it is.
func (dv *device) records() []record {
	dv.t.Helper()
	var out []record
	keysNow := dv.deviceKeys()
	err := dv.d.st.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(store.BucketSubjects).Cursor()
		for k, v := c.Seek([]byte("person/")); k != nil && bytes.HasPrefix(k, []byte("person/")); k, v = c.Next() {
			var p struct{ Sealed []byte }
			json.Unmarshal(v, &p)
			id := string(k[len("person/"):])
			out = append(out, record{what: "consent", subject: id, sealed: p.Sealed, aad: []byte("consent/" + id)})
		}
		tx.Bucket(store.BucketFaces).ForEach(func(k, v []byte) error {
			key := string(k)
			r := record{sealed: bytes.Clone(v), aad: bytes.Clone(k)}
			switch {
			case strings.HasPrefix(key, "tpl/"):
				r.what, r.subject = "template", key[len("tpl/"):]
			case strings.HasPrefix(key, "sight/"):
				r.subject, _, _ = strings.Cut(key[len("sight/"):], "/")
				pt := openWith(keysNow, v, k)
				var sg struct{ At time.Time }
				json.Unmarshal(pt, &sg)
				r.what = map[bool]string{true: "sighting_old", false: "sighting_new"}[sg.At.Equal(oldSighting)]
			default:
				return nil
			}
			out = append(out, r)
			return nil
		})
		arts := tx.Bucket(store.BucketOutbox).Bucket([]byte("artifacts"))
		return arts.ForEach(func(k, v []byte) error {
			var env struct {
				V      int
				Sealed []byte
			}
			json.Unmarshal(v, &env)
			if env.V != 2 {
				return nil // not person-linked
			}
			aad := []byte("outbox-record/" + string(k))
			var rec struct {
				Kind      string `json:"kind"`
				SubjectID string `json:"subject_id"`
			}
			pt := openWith(keysNow, env.Sealed, aad)
			json.Unmarshal(pt, &rec)
			what := map[string]string{"sighting": "queued_sighting", "face_template": "queued_backup"}[rec.Kind]
			if pt == nil {
				what = "queued_unreadable" // its key is gone: it should be gone too
			}
			out = append(out, record{what: what, subject: rec.SubjectID, sealed: env.Sealed, aad: aad})
			return nil
		})
	})
	if err != nil {
		dv.t.Fatal(err)
	}
	return out
}

// deviceKeys is every key left on the device: the device key and every
// occupied slot of the keyring files (people's, and the data keyring of
// photos and artifacts), read from disk.
func (dv *device) deviceKeys() [][]byte {
	dv.t.Helper()
	dk, err := os.ReadFile(filepath.Join(dv.dataDir, "device.key"))
	if err != nil {
		dv.t.Fatal(err)
	}
	out := [][]byte{dk}
	for _, name := range []string{"people.keys", "data.keys"} {
		ring, err := os.ReadFile(filepath.Join(dv.dataDir, name))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			dv.t.Fatal(err)
		}
		for o := 0; o+keys.Size <= len(ring); o += keys.Size {
			if s := ring[o : o+keys.Size]; !bytes.Equal(s, make([]byte, keys.Size)) {
				out = append(out, bytes.Clone(s))
			}
		}
	}
	return out
}

func openWith(ks [][]byte, sealed, aad []byte) []byte {
	for _, k := range ks {
		if pt, err := keys.Open(k, sealed, aad); err == nil {
			return pt
		}
	}
	return nil
}

// eraseRequests are the erase_request events committed and not yet
// published.
func (dv *device) eraseRequests() []map[string]any {
	var out []map[string]any
	dv.d.st.View(func(tx *bolt.Tx) error {
		return tx.Bucket(store.BucketEvents).ForEach(func(k, v []byte) error {
			var ev map[string]any
			json.Unmarshal(v, &ev)
			if ev["type"] == "erase_request" {
				out = append(out, ev)
			}
			return nil
		})
	})
	return out
}

func kinds(ev map[string]any) []string {
	var out []string
	for _, k := range ev["kinds"].([]any) {
		out = append(out, k.(string))
	}
	slices.Sort(out)
	return out
}

var every = []string{"consent", "template", "sighting_old", "sighting_new", "queued_sighting", "queued_backup"}

// Promises P5, P10, P11 and P12: a withdrawal erases every copy. For each
// trigger, after its commit, no key left on the device (the device key,
// every slot of the keyring file) opens any copy, live or in a freed page,
// of what the trigger erased; what it keeps is live and readable; the
// other person is untouched; the right erase_request was committed; and no
// sighting time was ever written in clear.
func TestP5_P10_EveryTriggerErasesEveryCopyOfWhatItCovers(t *testing.T) {
	type trigger struct {
		name string
		run  func(dv *device)
		// erased: ana's values that no key may open any more, old copies
		// included. kept: ana's values that must still be live. The
		// other old copies of ana's values must not open either: what is
		// kept is sealed again under a new key.
		erased, kept []string
		request      []string // kinds of the erase_request ("" none)
		perSubject   bool     // the request names ana
		bobToo       bool     // bob's face data goes as well
	}
	faceData := []string{"template", "sighting_old", "sighting_new", "queued_sighting", "queued_backup"}
	triggers := []trigger{
		{name: "revoke_all", run: func(dv *device) { dv.cmd("revoke_consent", map[string]any{"subject_id": "ana"}) },
			erased: every, request: []string{"face_template", "sighting"}, perSubject: true},
		{name: "revoke_face_recognition", run: func(dv *device) {
			dv.cmd("revoke_consent", map[string]any{"subject_id": "ana", "scopes": []string{"face_recognition"}})
		}, erased: faceData, kept: []string{"consent"}, request: []string{"face_template", "sighting"}, perSubject: true},
		{name: "revoke_cloud_backup", run: func(dv *device) {
			dv.cmd("revoke_consent", map[string]any{"subject_id": "ana", "scopes": []string{"cloud_backup"}})
		}, erased: []string{"queued_backup"}, kept: []string{"consent", "template", "sighting_old", "sighting_new", "queued_sighting"},
			request: []string{"face_template"}, perSubject: true},
		{name: "narrower_grant", run: func(dv *device) {
			dv.cmd("grant_consent", map[string]any{"subject_id": "ana", "display_name": "Anastasia Quux", "granted_by": "self", "scopes": []string{"cloud_backup"}})
		}, erased: faceData, kept: []string{"consent"}, request: []string{"face_template", "sighting"}, perSubject: true},
		{name: "delete_data_faces", run: func(dv *device) { dv.cmd("delete_data", map[string]any{"categories": []string{"faces"}}) },
			erased: faceData, kept: []string{"consent"}, request: []string{"face_template", "sighting"}, bobToo: true},
		{name: "delete_data_sightings", run: func(dv *device) { dv.cmd("delete_data", map[string]any{"categories": []string{"sightings"}}) },
			erased: []string{"sighting_old", "sighting_new", "queued_sighting"}, kept: []string{"consent", "template", "queued_backup"},
			request: []string{"sighting"}, bobToo: true},
		{name: "delete_data_all", run: func(dv *device) { dv.cmd("delete_data", map[string]any{"categories": []string{"all"}}) },
			erased: every, request: []string{"face_template", "photo", "sighting", "usage"}, bobToo: true},
		{name: "prohibited_region", run: func(dv *device) { dv.cmd("set_region", map[string]any{"region": "US-IL"}) },
			erased: faceData, kept: []string{"consent"}, request: []string{"face_template", "sighting"}, perSubject: true, bobToo: true},
		{name: "retention", run: func(dv *device) { dv.d.sweep() },
			erased: []string{"sighting_old"}, kept: []string{"consent", "template", "sighting_new", "queued_sighting", "queued_backup"}, bobToo: true},
	}
	for _, tr := range triggers {
		t.Run(tr.name, func(t *testing.T) {
			dv := newDevice(t, "")
			dv.people()
			before := dv.records()
			for _, w := range every {
				if !slices.ContainsFunc(before, func(r record) bool { return r.subject == "ana" && r.what == w }) {
					t.Fatalf("set-up: ana has no %s: the test reads nothing", w)
				}
			}
			tr.run(dv)
			after := dv.records()
			devKeys := dv.deviceKeys()
			for _, r := range before {
				if r.subject != "ana" && !(tr.bobToo && r.subject == "bob" && slices.Contains(tr.erased, r.what)) {
					continue
				}
				opens := openWith(devKeys, r.sealed, r.aad) != nil
				switch {
				case slices.Contains(tr.erased, r.what) && opens:
					t.Errorf("%s of %s: a key on the device still opens a copy of what was erased", r.what, r.subject)
				case r.subject == "ana" && r.what != "consent" && opens:
					// Kept face data is sealed again under a new face key:
					// the old copy opens no more.
					t.Errorf("%s of ana: the old copy still opens after part of her face data was erased", r.what)
				}
			}
			for _, w := range tr.kept {
				live := slices.ContainsFunc(after, func(r record) bool {
					return r.subject == "ana" && r.what == w && openWith(devKeys, r.sealed, r.aad) != nil
				})
				if !live {
					t.Errorf("ana's %s was not kept readable", w)
				}
			}
			for _, w := range tr.erased {
				if slices.ContainsFunc(after, func(r record) bool { return r.subject == "ana" && r.what == w }) {
					t.Errorf("ana's %s is still in the store", w)
				}
			}
			if slices.ContainsFunc(after, func(r record) bool { return r.what == "queued_unreadable" }) {
				t.Error("queued artifacts whose key was erased are still in the store")
			}
			if !tr.bobToo {
				for _, w := range every {
					if !slices.ContainsFunc(after, func(r record) bool {
						return r.subject == "bob" && r.what == w && openWith(devKeys, r.sealed, r.aad) != nil
					}) && w != "queued_backup" {
						t.Errorf("bob's %s went with ana's", w)
					}
				}
			}
			reqs := dv.eraseRequests()
			if tr.request == nil && len(reqs) != 0 {
				t.Errorf("erase requests %v, want none", reqs)
			}
			if tr.request != nil {
				found := slices.ContainsFunc(reqs, func(ev map[string]any) bool {
					return slices.Equal(kinds(ev), tr.request) && (!tr.perSubject || ev["subject_id"] == "ana") && ev["event_id"] != ""
				})
				if !found {
					t.Errorf("erase requests %v, want kinds %v (naming ana: %v)", reqs, tr.request, tr.perSubject)
				}
			}
			dv.close()
			raw, err := os.ReadFile(filepath.Join(dv.dataDir, "state.db"))
			if err != nil {
				t.Fatal(err)
			}
			for _, clearText := range []string{"2026-10-13T03:04:05", "2026-11-22T11:06:07", "Anastasia", "04-05"} {
				if bytes.Contains(raw, []byte(clearText)) {
					t.Errorf("the store file holds %q in clear", clearText)
				}
			}
		})
	}
}

// A change of face model: templates of the old model are erased (their old
// copies open with no key left), consent stays, the app is told in a
// durable enrollment_needed event, and the inventory shows it.
func TestP5_AChangeOfModelErasesTemplatesAndAsksForEnrollment(t *testing.T) {
	dv := newDevice(t, "")
	dv.people()
	before := dv.records()
	dv.close()
	old := newRecognizer
	newRecognizer = func() facerec.Recognizer { return otherModel{} }
	defer func() { newRecognizer = old }()
	dv2 := newDevice(t, dv.dataDir)
	devKeys := dv2.deviceKeys()
	for _, r := range before {
		if r.what != "consent" && openWith(devKeys, r.sealed, r.aad) != nil {
			t.Errorf("%s of %s: the old copy still opens after the model changed", r.what, r.subject)
		}
	}
	after := dv2.records()
	for _, s := range []string{"ana", "bob"} {
		if slices.ContainsFunc(after, func(r record) bool { return r.subject == s && r.what == "template" }) {
			t.Errorf("%s's templates of the old model survive", s)
		}
		if !slices.ContainsFunc(after, func(r record) bool { return r.subject == s && r.what == "sighting_new" }) {
			t.Errorf("%s's sightings went with the templates", s)
		}
	}
	var needed []string
	dv2.d.st.View(func(tx *bolt.Tx) error {
		return tx.Bucket(store.BucketEvents).ForEach(func(k, v []byte) error {
			var ev map[string]any
			json.Unmarshal(v, &ev)
			if ev["type"] == "enrollment_needed" && ev["reason"] == "model_changed" {
				needed = append(needed, ev["subject_id"].(string))
			}
			return nil
		})
	})
	slices.Sort(needed)
	if !slices.Equal(needed, []string{"ana", "bob"}) {
		t.Fatalf("enrollment_needed for %v", needed)
	}
	var inv Inventory
	dv2.d.st.View(func(tx *bolt.Tx) (err error) { inv, err = dv2.d.inventory(tx); return })
	for _, s := range inv.Subjects {
		if !s.Consent || !s.EnrollmentNeeded || s.Templates != 0 {
			t.Errorf("inventory after the model change: %+v", s)
		}
	}
}

// testModel matches nothing: these tests store templates directly and
// never match a face.
type testModel struct{}

func (testModel) Model() string { return "test-model-v1" }

func (testModel) Build(map[string][][]byte) (facerec.Matcher, error) { return nil, nil }

type otherModel struct{ testModel }

func (otherModel) Model() string { return "test-model-v2" }

// Promise P5, under concurrency: a revocation racing the commits of the
// person's sightings never leaves one of their artifacts in the store (the
// drop reads the store in the revocation's own transaction, so an artifact
// committed a moment before is seen; one after it finds no consent).
func TestP5_ARevocationRacingSightingsLeavesNoneOfThem(t *testing.T) {
	for iter := range 12 {
		dv := newDevice(t, "")
		dv.cmd("accept_policy", map[string]any{"version": "v1"})
		dv.cmd("set_features", map[string]any{"patrol": true})
		dv.cmd("grant_consent", map[string]any{"subject_id": "ana", "display_name": "A", "granted_by": "self", "scopes": []string{"face_recognition"}})
		stop := make(chan struct{})
		done := make(chan int)
		go func() {
			n := 0
			for {
				select {
				case <-stop:
					done <- n
					return
				default:
				}
				err := dv.d.st.Update(func(tx *bolt.Tx) error {
					at := dv.now.Add(time.Duration(n) * time.Second)
					slot, err := dv.d.faces.RecordSightingTx(tx, "ana", at, 0.9)
					if err != nil {
						return err
					}
					return dv.d.sightingTx(tx, "ana", slot, at, 0.9)
				})
				if err == nil {
					n++
				}
			}
		}()
		time.Sleep(time.Duration(iter%4) * 3 * time.Millisecond)
		dv.cmd("revoke_consent", map[string]any{"subject_id": "ana"})
		time.Sleep(2 * time.Millisecond) // commits after the revocation must fail
		close(stop)
		n := <-done
		if n == 0 && iter > 0 {
			t.Logf("iteration %d: no sighting committed before the revocation", iter)
		}
		for _, r := range dv.records() {
			if r.subject == "ana" || r.what == "queued_unreadable" {
				t.Fatalf("iteration %d: %s of %q left after the revocation (%d sightings raced it)", iter, r.what, r.subject, n)
			}
		}
		for _, m := range dv.d.outbox.List() {
			if m.SubjectID == "ana" {
				t.Fatalf("iteration %d: the outbox still means to send %s", iter, m.ID)
			}
		}
		dv.close()
	}
}

// Issue: a narrower grant used to withdraw without erasing, and a later
// full revocation then left orphans no key opened and no inventory showed.
// The sequence as the app plays it, read back through the inventory.
func TestP5_ANarrowerGrantThenARevocationLeaveNothing(t *testing.T) {
	dv := newDevice(t, "")
	dv.people()
	inv := func() Inventory {
		var inv Inventory
		dv.d.st.View(func(tx *bolt.Tx) (err error) { inv, err = dv.d.inventory(tx); return })
		return inv
	}
	subject := func(id string) (SubjectHolding, bool) {
		for _, s := range inv().Subjects {
			if s.SubjectID == id {
				return s, true
			}
		}
		return SubjectHolding{}, false
	}
	if s, _ := subject("ana"); s.Templates != 1 || s.Sightings != 2 || s.QueuedArtifacts != 3 {
		t.Fatalf("set-up: %+v", s)
	}
	dv.cmd("grant_consent", map[string]any{"subject_id": "ana", "display_name": "Anastasia Quux", "granted_by": "self", "scopes": []string{"cloud_backup"}})
	if s, _ := subject("ana"); s.Templates != 0 || s.Sightings != 0 || s.QueuedArtifacts != 0 || !slices.Equal(s.Scopes, []string{"cloud_backup"}) {
		t.Fatalf("after the narrower grant: %+v", s)
	}
	reqs := dv.eraseRequests()
	if len(reqs) != 1 || !slices.Equal(kinds(reqs[0]), []string{"face_template", "sighting"}) || reqs[0]["subject_id"] != "ana" {
		t.Fatalf("erase requests after the narrower grant: %v", reqs)
	}
	dv.cmd("revoke_consent", map[string]any{"subject_id": "ana"})
	if s, ok := subject("ana"); ok {
		t.Fatalf("ana still in the inventory after revoking everything: %+v", s)
	}
	if c := inv().Categories["faces"]; c.Count != 1 || c.Unreadable != 0 { // bob's
		t.Fatalf("faces category %+v", c)
	}
}

// Promise P9: the inventory reports what the store holds, not what the
// consent records say: face data nobody's consent covers (what an older
// version's narrower grant left behind) is listed under its subject, and
// at the next start it is erased and the cloud asked to erase its copies.
func TestP9_TheInventoryShowsOrphansAndTheNextStartErasesThem(t *testing.T) {
	dv := newDevice(t, "")
	dv.people()
	// An orphan as an older version left it: the consent record goes,
	// the face data, its queued artifacts and its key's slot stay.
	err := dv.d.st.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(store.BucketSubjects).Delete([]byte("person/ana"))
	})
	if err != nil {
		t.Fatal(err)
	}
	var inv Inventory
	dv.d.st.View(func(tx *bolt.Tx) (err error) { inv, err = dv.d.inventory(tx); return })
	var ana *SubjectHolding
	for i := range inv.Subjects {
		if inv.Subjects[i].SubjectID == "ana" {
			ana = &inv.Subjects[i]
		}
	}
	if ana == nil || ana.Consent || ana.Templates != 1 || ana.Sightings != 2 {
		t.Fatalf("the orphan is not in the inventory: %+v", ana)
	}
	dir := dv.dataDir
	dv.close()
	dv2 := newDevice(t, dir)
	for _, r := range dv2.records() {
		if r.subject == "ana" || r.what == "queued_unreadable" {
			t.Errorf("%s of %q survived the start", r.what, r.subject)
		}
	}
	found := slices.ContainsFunc(dv2.eraseRequests(), func(ev map[string]any) bool {
		return ev["subject_id"] == "ana" && slices.Equal(kinds(ev), []string{"face_template", "sighting"})
	})
	if !found {
		t.Fatalf("no erase_request for the orphan: %v", dv2.eraseRequests())
	}
}
