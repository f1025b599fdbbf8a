package outbox

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/keys"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// sealedCopy is what the device held of one artifact before it went: its
// record's sealed content key (a freed page may keep it) and its sealed
// content (a freed page or an old flash block may keep it).
type sealedCopy struct {
	id           string
	key, content []byte
}

func (e *env) sealedCopies(t *testing.T) []sealedCopy {
	t.Helper()
	var out []sealedCopy
	e.st.View(func(tx *bolt.Tx) error {
		root := tx.Bucket(store.BucketOutbox)
		return root.Bucket(bucketArtifacts).ForEach(func(k, v []byte) error {
			var r record
			json.Unmarshal(v, &r)
			c := bytes.Clone(root.Bucket(bucketContent).Get(k))
			if !r.Inline {
				var err error
				if c, err = os.ReadFile(filepath.Join(e.dir, r.File)); err != nil {
					t.Fatal(err)
				}
			}
			out = append(out, sealedCopy{string(k), r.Key, c})
			return nil
		})
	})
	return out
}

// keysOnDevice is the device key and every occupied slot of the data
// keyring file.
func (e *env) keysOnDevice(t *testing.T) [][]byte {
	t.Helper()
	out := [][]byte{e.devKey}
	raw, err := os.ReadFile(filepath.Join(filepath.Dir(e.dir), "data.keys"))
	if err != nil {
		t.Fatal(err)
	}
	for o := 0; o+keys.Size <= len(raw); o += keys.Size {
		if s := raw[o : o+keys.Size]; !bytes.Equal(s, make([]byte, keys.Size)) {
			out = append(out, bytes.Clone(s))
		}
	}
	return out
}

func (c sealedCopy) opensWith(ks [][]byte) bool {
	for _, k := range ks {
		if ck, err := keys.Open(k, c.key, keyAAD(c.id)); err == nil {
			if _, err := keys.Open(ck, c.content, contentAAD(c.id)); err == nil {
				return true
			}
		}
	}
	return false
}

// Promise P4 (issue 22 item 5): an upload the cloud acked, or one dropped,
// is gone for good: its content key was sealed by the device key, so a
// freed page and the content file's old blocks could be put together
// afterwards. Now no key left on the device opens any copy of it.
func TestP4_AnAckedOrDroppedUploadCannotBeReadBack(t *testing.T) {
	b := testbroker.Start(t)
	e := newEnv(t)
	o := e.open(func(c *Config) { c.AckTimeout = time.Hour })
	cl := newCloud(t, b)
	l, _ := startLink(t, b)
	acked := enqueue(t, o, policy.KindPhoto, randBytes(40_000)) // a file of its own
	small := enqueue(t, o, policy.KindUsage, randBytes(100))    // inline in the store
	dropped := enqueue(t, o, policy.KindPhoto, randBytes(20_000))
	copies := e.sealedCopies(t)
	if len(copies) != 3 {
		t.Fatalf("set-up: %d artifacts", len(copies))
	}
	for _, c := range copies {
		if !c.opensWith(e.keysOnDevice(t)) {
			t.Fatalf("set-up: %s does not open while queued: the test checks nothing", c.id)
		}
	}
	runOutbox(t, o, l)
	cl.waitDelivered(acked.ID, 1)
	cl.waitDelivered(small.ID, 1)
	cl.sendAck(acked.ID, `{"ok":true}`)
	cl.sendAck(small.ID, `{"ok":true}`)
	e.waitAcked(acked.ID, small.ID)
	if _, err := o.Drop(func(m Meta) bool { return m.ID == dropped.ID }, "delete_data"); err != nil {
		t.Fatal(err)
	}
	left := e.keysOnDevice(t)
	for _, c := range copies {
		if c.opensWith(left) {
			t.Errorf("artifact %s: a key on the device still opens a copy of it", c.id)
		}
	}
	if n := len(left); n != 1 {
		t.Errorf("%d keys left on the device, want the device key alone", n)
	}
}
