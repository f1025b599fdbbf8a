package agent

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/agent/command"
	"github.com/aibo-privacy/aibo-privacyd/capture"
	"github.com/aibo-privacy/aibo-privacyd/core/audit"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/facerec"
	"github.com/aibo-privacy/aibo-privacyd/internal/textx"
	"github.com/aibo-privacy/aibo-privacyd/sync/outbox"
)

// The data categories of delete_data.
var dataCategories = []string{"photos", "faces", "sightings", "usage"}

// deleteData erases categories on the device in the command's transaction
// (records, keys and queued artifacts), then removes files and asks the
// cloud to erase its copies. "all" also forgets every person: consent
// records, names and birthdays (the audit keeps opaque ids only).
//
// Signed, it names no single setting and acts only on what was recorded
// before its issued_at (contract v3): photos admitted, face data
// enrolled or seen, artifacts created before it go; a person whose
// consent the owner granted (or last changed) after it stays, with what
// was recorded since, and consents older than it are superseded from now
// on.
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
	all := false
	for _, c := range p.Categories {
		switch {
		case c == "all":
			all, cats = true, dataCategories
		case slices.Contains(dataCategories, c):
			if !slices.Contains(cats, c) {
				cats = append(cats, c)
			}
		default:
			return nil, command.Errorf(command.CodeBadRequest, "unknown category %q", textx.Cut(c, 40))
		}
	}
	cut := e.Cutoff()
	counts := map[string]int{}
	var cloud []policy.Kind
	queued := 0
	if slices.Contains(cats, "photos") {
		ids, err := d.vault.ForgetUndecidedTx(e.Tx, cut)
		if err != nil {
			return nil, err
		}
		counts["photos"] = len(ids)
		cloud = append(cloud, policy.KindPhoto)
		// The features of the photos uploaded before it, kept for
		// photo_feedback, go with them (all of them when unsigned).
		before := cut
		if before.IsZero() {
			before = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
		}
		if _, err := d.selector.PruneScoresTx(e.Tx, before.Add(capture.ScoreRetention)); err != nil {
			return nil, err
		}
	}
	// Faces and people: through the one erasure path, person by person.
	er := erasure{reason: "delete_data", person: all, before: cut}
	spared := map[string]bool{}
	if all && !cut.IsZero() {
		er.spare = func(subject string) bool {
			at := e.Latest(consentSetting(subject))
			if at.IsZero() { // granted before consents were ordered
				c, ok, err := d.pol.Consent(e.Tx, subject)
				if err != nil || !ok {
					return false
				}
				at = c.GrantedAt
			}
			spared[subject] = !at.Before(cut)
			return spared[subject]
		}
	}
	switch {
	case slices.Contains(cats, "faces"):
		// Templates and sightings both go: a sighting is face data too.
		er.what, er.drop = allFaceData, faceKinds
		cloud = append(cloud, faceKinds...)
	case slices.Contains(cats, "sightings"):
		er.what, er.drop = facerec.What{Sightings: true}, []policy.Kind{policy.KindSighting}
		cloud = append(cloud, policy.KindSighting)
	}
	er.what.Before = cut
	if all {
		counts["people"] = 0
	}
	if er.drop != nil || er.person {
		held, err := d.everyoneTx(e.Tx, e.Now, er)
		if err != nil {
			return nil, err
		}
		for s, f := range held {
			if slices.Contains(cats, "faces") {
				counts["faces"] += f.Templates
			}
			counts["sightings"] += f.Sightings
			queued += f.Queued
			if all && !spared[s] {
				counts["people"]++
			}
		}
	}
	if all {
		// Every consent older than this command is superseded from now on:
		// a grant the network held back cannot bring a person back.
		if err := e.RaiseFloor("consent/*"); err != nil {
			return nil, err
		}
	}
	var kinds []policy.Kind // queued artifacts about no one in particular
	if slices.Contains(cats, "photos") {
		kinds = append(kinds, policy.KindPhoto)
	}
	if slices.Contains(cats, "usage") {
		kinds = append(kinds, policy.KindUsage)
	}
	if len(kinds) > 0 {
		after, n, err := d.outbox.DropKindsTx(e.Tx, kinds, cut, "delete_data")
		if err != nil {
			return nil, err
		}
		e.OnCommit(after)
		queued += n
	}
	if slices.Contains(cats, "usage") {
		cloud = append(cloud, policy.KindUsage)
	}
	fields := map[string]string{"categories": strings.Join(cats, ",")}
	for c, n := range counts {
		fields[c] = strconv.Itoa(n)
	}
	if _, err := audit.Append(e.Tx, e.Now, "data_deleted", "", fields); err != nil {
		return nil, err
	}
	cloud = unique(cloud)
	if err := d.eraseRequestTx(e.Tx, e.Now, cloud, "", cut); err != nil {
		return nil, err
	}
	e.OnCommit(d.stateChanged)
	res := map[string]any{"categories": cats, "erased": counts, "queued_dropped": queued, "erase_requested": cloud}
	if !cut.IsZero() {
		res["recorded_before"] = cut.UTC().Format(time.RFC3339)
	}
	return res, nil
}

func unique[T comparable](s []T) []T {
	var out []T
	for _, v := range s {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// exportInventory queues an inventory artifact: what the device holds,
// never content.
func (d *Daemon) exportInventory(ctx context.Context, e *command.Exec) (any, error) {
	inv, err := d.inventory(e.Tx)
	if err != nil {
		return nil, err
	}
	body, _ := json.Marshal(inv)
	p, err := d.outbox.Prepare(outbox.Artifact{Kind: policy.KindInventory, ContentType: "application/json", Content: body, CreatedAt: e.Now})
	if err != nil {
		return nil, err
	}
	m, err := d.outbox.EnqueueTx(e.Tx, p)
	if err != nil {
		p.Discard()
		return nil, command.Errorf(command.CodeBusy, "outbox: %s", err.Error())
	}
	e.OnCommit(d.stateChanged)
	return map[string]any{"artifact_id": m.ID}, nil
}

// Inventory is what the device holds, by category and by person, read
// from the store itself: a person it holds anything about is listed,
// whether or not a consent is recorded.
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
	Unreadable       int     `json:"unreadable,omitempty"`
	ErasedBy         string  `json:"erased_by"`
}

// SubjectHolding is what the device holds about one person (opaque id).
type SubjectHolding struct {
	SubjectID               string   `json:"subject_id"`
	Consent                 bool     `json:"consent"`
	Scopes                  []string `json:"scopes"`
	Minor                   bool     `json:"minor"`
	ConsentAgeSeconds       float64  `json:"consent_age_seconds,omitempty"`
	Templates               int      `json:"templates"`
	TemplateModel           string   `json:"template_model,omitempty"`
	EnrollmentNeeded        bool     `json:"enrollment_needed,omitempty"`
	Sightings               int      `json:"sightings"`
	Unreadable              int      `json:"unreadable,omitempty"`
	OldestSightingAgeSecond float64  `json:"oldest_sighting_age_seconds,omitempty"`
	NextSightingErasure     string   `json:"next_sighting_erasure,omitempty"`
	QueuedArtifacts         int      `json:"queued_artifacts"`
}

func (d *Daemon) inventory(tx *bolt.Tx) (Inventory, error) {
	now := d.now()
	inv := Inventory{GeneratedAt: now.UTC(), Categories: map[string]CategoryHolding{}, Subjects: []SubjectHolding{}}
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
	queue, err := d.outbox.HoldingsTx(tx)
	if err != nil {
		return inv, err
	}
	byID := map[string]*SubjectHolding{}
	subject := func(id string) *SubjectHolding {
		if s, ok := byID[id]; ok {
			return s
		}
		s := &SubjectHolding{SubjectID: id, Scopes: []string{}}
		byID[id] = s
		return s
	}
	for _, c := range consents {
		sh := subject(c.SubjectID)
		sh.Consent, sh.Minor, sh.ConsentAgeSeconds = true, c.Minor, now.Sub(c.GrantedAt).Seconds()
		for _, s := range c.Scopes {
			sh.Scopes = append(sh.Scopes, string(s))
		}
	}
	faces := CategoryHolding{ErasedBy: "revoke_consent, delete_data faces, or a move to a prohibited region"}
	sightings := CategoryHolding{ErasedBy: "retention after " + d.cfg.Retention.Sightings.D().String() + ", revoke_consent or delete_data"}
	for id, h := range held {
		sh := subject(id)
		sh.Templates, sh.Sightings, sh.Unreadable = h.Templates, h.Sightings, h.Unreadable
		sh.TemplateModel = h.Model
		sh.EnrollmentNeeded = h.EnrollmentNeeded || (h.Templates > 0 && h.Model != d.recognizer.Model())
		faces.Count += h.Templates
		faces.Unreadable += h.Unreadable
		sightings.Count += h.Sightings
		if !h.OldestSighting.IsZero() {
			sh.OldestSightingAgeSecond = now.Sub(h.OldestSighting).Seconds()
			sh.NextSightingErasure = h.OldestSighting.Add(d.cfg.Retention.Sightings.D()).UTC().Format(time.RFC3339)
			sightings.OldestAgeSeconds = max(sightings.OldestAgeSeconds, sh.OldestSightingAgeSecond)
			age := now.Sub(h.NewestSighting).Seconds()
			if sightings.NewestAgeSeconds == 0 || age < sightings.NewestAgeSeconds {
				sightings.NewestAgeSeconds = age
			}
		}
	}
	for id, n := range queue.BySubject {
		subject(id).QueuedArtifacts = n
	}
	for _, id := range slices.Sorted(maps.Keys(byID)) {
		inv.Subjects = append(inv.Subjects, *byID[id])
	}
	inv.Categories["faces"] = faces
	inv.Categories["sightings"] = sightings
	inv.Categories["consents"] = CategoryHolding{Count: len(consents), ErasedBy: "revoke_consent or delete_data all"}
	inv.Categories["usage"] = CategoryHolding{ErasedBy: "not collected on the device"}
	scores := CategoryHolding{ErasedBy: "delete_data photos, or retention " + strconv.Itoa(int(capture.ScoreRetention.Hours()/24)) + " days after the upload"}
	if n, oldest := capture.ScoreHoldings(tx); n > 0 {
		scores.Count, scores.OldestAgeSeconds = n, now.Sub(oldest).Seconds()
	}
	inv.Categories["photo_scores"] = scores
	q := CategoryHolding{Unreadable: queue.Unreadable, ErasedBy: "the cloud's ok ack, a withdrawn consent or delete_data"}
	for _, k := range queue.Kinds {
		q.Count += k.Count
		q.Bytes += k.Bytes
		q.OldestAgeSeconds = max(q.OldestAgeSeconds, k.OldestAgeSeconds)
	}
	inv.Categories["queued_artifacts"] = q
	recs, err := audit.Newest(tx, 1)
	if err != nil {
		return inv, err
	}
	// Count, not Verify: the inventory may run inside a command's write
	// transaction, and walking the whole chain there holds every writer.
	records, err := audit.Count(tx)
	if err != nil {
		return inv, err
	}
	ac := CategoryHolding{Count: records, ErasedBy: "retention after " + d.cfg.Retention.Audit.D().String()}
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
