package agent

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/agent/command"
	"github.com/aibo-privacy/aibo-privacyd/capture"
	"github.com/aibo-privacy/aibo-privacyd/core/audit"
	"github.com/aibo-privacy/aibo-privacyd/sync/outbox"
)

// The data categories of delete_data.
var dataCategories = []string{"photos", "faces", "sightings", "usage"}

// categoryKinds maps a category to the artifact kinds the cloud may hold.
var categoryKinds = map[string][]string{
	"photos":    {outbox.KindPhoto},
	"faces":     {outbox.KindFaceTemplate},
	"sightings": {outbox.KindSighting},
	"usage":     {outbox.KindUsage},
}

// deleteData erases categories on the device in the command's transaction
// (records and keys), then drops queued artifacts, removes files and asks
// the cloud to erase its copies.
func (d *Daemon) deleteData(ctx context.Context, e *command.Exec) (any, error) {
	var p struct {
		Categories []string `json:"categories"`
	}
	if err := command.Decode(e.Cmd.Payload, &p); err != nil {
		return nil, err
	}
	if len(p.Categories) == 0 {
		return nil, command.Errorf(command.CodeBadRequest, "categories must name at least one of photos, faces, sightings, usage, all")
	}
	var cats []string
	for _, c := range p.Categories {
		switch {
		case c == "all":
			cats = dataCategories
		case slices.Contains(dataCategories, c):
			if !slices.Contains(cats, c) {
				cats = append(cats, c)
			}
		default:
			return nil, command.Errorf(command.CodeBadRequest, "unknown category %q", trim(c))
		}
	}
	counts := map[string]int{}
	var photoIDs []string
	var forgotten []string
	if slices.Contains(cats, "photos") {
		ids, err := capture.ForgetUndecided(e.Tx)
		if err != nil {
			return nil, err
		}
		photoIDs = ids
		counts["photos"] = len(ids)
	}
	if slices.Contains(cats, "faces") || slices.Contains(cats, "sightings") {
		held, err := d.faces.Holdings(e.Tx)
		if err != nil {
			return nil, err
		}
		for subject, h := range held {
			if slices.Contains(cats, "faces") {
				// Templates and sightings both go: a sighting is face data too.
				if _, err := d.faces.Forget(e.Tx, subject); err != nil {
					return nil, err
				}
				counts["faces"] += h.Templates
				counts["sightings"] += h.Sightings
				forgotten = append(forgotten, subject)
				continue
			}
			if _, err := d.faces.ForgetSightings(e.Tx, subject); err != nil {
				return nil, err
			}
			counts["sightings"] += h.Sightings
		}
	}
	var kinds []string
	for _, c := range cats {
		kinds = append(kinds, categoryKinds[c]...)
	}
	if slices.Contains(cats, "faces") {
		kinds = append(kinds, outbox.KindSighting)
	}
	kinds = unique(kinds)
	queued := 0
	for _, m := range d.outbox.List() {
		if slices.Contains(kinds, m.Kind) {
			queued++
		}
	}
	fields := map[string]string{"categories": join(cats)}
	for c, n := range counts {
		fields[c] = strconv.Itoa(n)
	}
	if _, err := audit.Append(e.Tx, e.Now, "data_deleted", "", fields); err != nil {
		return nil, err
	}
	if err := d.eraseRequest(e, kinds, ""); err != nil {
		return nil, err
	}
	if err := d.dropQueuedTx(e, func(m outbox.Meta) bool { return slices.Contains(kinds, m.Kind) }, "delete_data"); err != nil {
		return nil, err
	}
	e.AfterCommit(func() {
		for _, s := range forgotten {
			d.faces.Forgot(s)
		}
		if err := d.vault.RemoveFiles(photoIDs); err != nil {
			d.log.Error("remove erased photo files", "err", err)
		}
		d.stateChanged()
	})
	return map[string]any{"categories": cats, "erased": counts, "queued_dropped": queued, "erase_requested": kinds}, nil
}

// exportInventory queues an inventory artifact: what the device holds,
// never content.
func (d *Daemon) exportInventory(ctx context.Context, e *command.Exec) (any, error) {
	inv, err := d.inventory(e.Tx)
	if err != nil {
		return nil, err
	}
	body, _ := json.Marshal(inv)
	p, err := d.outbox.Prepare(outbox.Artifact{Kind: outbox.KindInventory, ContentType: "application/json", Content: body, CreatedAt: e.Now})
	if err != nil {
		return nil, err
	}
	m, err := d.outbox.EnqueueTx(e.Tx, p)
	if err != nil {
		p.Discard()
		return nil, command.Errorf(command.CodeBusy, "outbox: %s", err.Error())
	}
	e.AfterCommit(d.stateChanged)
	return map[string]any{"artifact_id": m.ID}, nil
}

// Inventory is what the device holds, by category and by person.
type Inventory struct {
	GeneratedAt time.Time                  `json:"generated_at"`
	Categories  map[string]CategoryHolding `json:"categories"`
	Subjects    []SubjectHolding           `json:"subjects"`
}

// CategoryHolding is one category: counts, bytes, ages and when retention
// erases it.
type CategoryHolding struct {
	Count            int     `json:"count"`
	Bytes            int64   `json:"bytes,omitempty"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds,omitempty"`
	NewestAgeSeconds float64 `json:"newest_age_seconds,omitempty"`
	ErasedBy         string  `json:"erased_by"`
}

// SubjectHolding is what the device holds about one person (opaque id).
type SubjectHolding struct {
	SubjectID               string   `json:"subject_id"`
	Scopes                  []string `json:"scopes"`
	Minor                   bool     `json:"minor"`
	ConsentAgeSeconds       float64  `json:"consent_age_seconds"`
	Templates               int      `json:"templates"`
	Sightings               int      `json:"sightings"`
	OldestSightingAgeSecond float64  `json:"oldest_sighting_age_seconds,omitempty"`
	NextSightingErasure     string   `json:"next_sighting_erasure,omitempty"`
	QueuedArtifacts         int      `json:"queued_artifacts"`
}

func (d *Daemon) inventory(tx *bolt.Tx) (Inventory, error) {
	now := d.now()
	inv := Inventory{GeneratedAt: now.UTC(), Categories: map[string]CategoryHolding{}}
	photos, err := capture.Photos(tx)
	if err != nil {
		return inv, err
	}
	ph := CategoryHolding{ErasedBy: "the day's selection (at " + d.cfg.Photos.SelectAt + " local time or when the cap is reached): kept ones are uploaded, the rest deleted"}
	for _, p := range photos {
		ph.Count++
		ph.Bytes += p.Size
		age := now.Sub(p.AdmittedAt).Seconds()
		ph.OldestAgeSeconds = max(ph.OldestAgeSeconds, age)
		if ph.NewestAgeSeconds == 0 || age < ph.NewestAgeSeconds {
			ph.NewestAgeSeconds = age
		}
	}
	inv.Categories["photos"] = ph
	held, err := d.faces.Holdings(tx)
	if err != nil {
		return inv, err
	}
	consents, err := d.pol.Consents(tx)
	if err != nil {
		return inv, err
	}
	queuedBy := map[string]int{}
	for _, m := range d.outbox.List() {
		if m.SubjectID != "" {
			queuedBy[m.SubjectID]++
		}
	}
	faces := CategoryHolding{ErasedBy: "revoke_consent, delete_data faces, or a move to a prohibited region"}
	sightings := CategoryHolding{ErasedBy: "retention after " + d.cfg.Retention.Sightings.D().String() + ", revoke_consent or delete_data"}
	for _, c := range consents {
		h := held[c.SubjectID]
		sh := SubjectHolding{SubjectID: c.SubjectID, Minor: c.Minor, ConsentAgeSeconds: now.Sub(c.GrantedAt).Seconds(),
			Templates: h.Templates, Sightings: h.Sightings, QueuedArtifacts: queuedBy[c.SubjectID]}
		for _, s := range c.Scopes {
			sh.Scopes = append(sh.Scopes, string(s))
		}
		if h.Sightings > 0 {
			sh.OldestSightingAgeSecond = now.Sub(h.OldestSighting).Seconds()
			sh.NextSightingErasure = h.OldestSighting.Add(d.cfg.Retention.Sightings.D()).UTC().Format(time.RFC3339)
			sightings.Count += h.Sightings
			sightings.OldestAgeSeconds = max(sightings.OldestAgeSeconds, sh.OldestSightingAgeSecond)
			age := now.Sub(h.NewestSighting).Seconds()
			if sightings.NewestAgeSeconds == 0 || age < sightings.NewestAgeSeconds {
				sightings.NewestAgeSeconds = age
			}
		}
		faces.Count += h.Templates
		inv.Subjects = append(inv.Subjects, sh)
	}
	inv.Categories["faces"] = faces
	inv.Categories["sightings"] = sightings
	inv.Categories["consents"] = CategoryHolding{Count: len(consents), ErasedBy: "revoke_consent"}
	inv.Categories["usage"] = CategoryHolding{ErasedBy: "not collected on the device"}
	q := CategoryHolding{ErasedBy: "the cloud's ok ack, a withdrawn consent or delete_data"}
	for _, k := range d.outbox.ByKind() {
		q.Count += k.Count
		q.Bytes += k.Bytes
		q.OldestAgeSeconds = max(q.OldestAgeSeconds, k.OldestAgeSeconds)
	}
	inv.Categories["queued_artifacts"] = q
	recs, err := audit.Newest(tx, 1)
	if err != nil {
		return inv, err
	}
	rep := audit.Verify(tx)
	ac := CategoryHolding{Count: rep.Records, ErasedBy: "retention after " + d.cfg.Retention.Audit.D().String()}
	if len(recs) > 0 {
		ac.NewestAgeSeconds = now.Sub(recs[0].At).Seconds()
	}
	inv.Categories["audit"] = ac
	return inv, nil
}

// Inventory answers GET /v1/inventory.
func (t *technician) Inventory(ctx context.Context) (any, error) {
	var inv Inventory
	err := t.d.view(func(tx *bolt.Tx) (err error) { inv, err = t.d.inventory(tx); return })
	return inv, err
}

func join(s []string) string { return strings.Join(s, ",") }
