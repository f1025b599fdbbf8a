// Package agent is the composition of the daemon: it opens the store once,
// builds the services (intake and selection, faces, MQTT link, outbox,
// command handlers, diagnostic socket), adapts their small interfaces to
// each other and runs them until the context ends. It owns no bucket: the
// one erasure path (forget.go) calls each owner in the trigger's
// transaction. Only cmd/aibo-privacyd imports it. It never links OpenCV.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/agent/command"
	"github.com/aibo-privacy/aibo-privacyd/agent/diag"
	"github.com/aibo-privacy/aibo-privacyd/capture"
	"github.com/aibo-privacy/aibo-privacyd/config"
	"github.com/aibo-privacy/aibo-privacyd/core/keys"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
	"github.com/aibo-privacy/aibo-privacyd/facerec"
	"github.com/aibo-privacy/aibo-privacyd/firmware"
	"github.com/aibo-privacy/aibo-privacyd/sync/events"
	"github.com/aibo-privacy/aibo-privacyd/sync/link"
	"github.com/aibo-privacy/aibo-privacyd/sync/outbox"
	"github.com/aibo-privacy/aibo-privacyd/vision"
)

// newRecognizer is the face recognizer the daemon matches with (a test
// swaps it to play a change of model).
var newRecognizer = func() facerec.Recognizer { return facerec.Descriptors{} }

// ShutdownTimeout bounds how long the services get to stop.
const ShutdownTimeout = 5 * time.Second

// Daemon is the running agent.
type Daemon struct {
	cfg     config.Config
	log     *slog.Logger
	now     func() time.Time     // the wall clock
	boot    func() time.Duration // CLOCK_BOOTTIME (the day clock's second opinion)
	days    *capture.DayClock    // which day the cap counts against: intake, selection, state
	started time.Time

	st         *store.Store
	ring       *keys.Keyring // people's identity and face keys, slots erased in place
	data       *keys.Keyring // a key per photo and per queued artifact that is not person-linked, erased in place
	outbox     *outbox.Outbox
	events     *events.Queue // every event, kept until the broker has it (notify.go)
	faces      *facerec.Service
	recognizer facerec.Recognizer
	pol        *policy.Policy
	vault      *capture.Vault
	intake     *capture.Intake
	selector   *capture.Selector
	link       *link.Link
	disp       *command.Dispatcher
	diag       *diag.Server
	tech       *technician
	fw         *firmware.Manager
	metrics    *metrics
	vision     *vision.Client
	vh         *visionHealth // whether images can be judged now, and why not

	stateDirty chan struct{}
	lastState  string // owned by publishStates
}

// New opens the store and builds every service; nothing runs yet.
func New(cfg config.Config, log *slog.Logger) (*Daemon, error) {
	now, boot, testClock, err := clockFromEnv()
	if err != nil {
		return nil, err
	} else if testClock != "" {
		log.Warn("TEST CLOCK in use: never on a robot", "env", TestClockEnv, "value", testClock)
	}
	d := &Daemon{cfg: cfg, log: log, now: now, boot: boot, started: time.Now(), stateDirty: make(chan struct{}, 1)}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	if err := makePrivate(cfg.DataDir, log); err != nil {
		return nil, err
	}
	deviceKey, err := keys.LoadOrCreateDeviceKey(filepath.Join(cfg.DataDir, "device.key"))
	if err != nil {
		return nil, err
	}
	d.st, err = store.Open(filepath.Join(cfg.DataDir, "state.db"))
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			d.st.Close()
		}
	}()
	d.ring, err = keys.OpenKeyring(filepath.Join(cfg.DataDir, "people.keys"))
	if err != nil {
		return nil, err
	}
	defer func() {
		if !ok {
			d.ring.Close()
		}
	}()
	d.data, err = keys.OpenKeyring(filepath.Join(cfg.DataDir, "data.keys"))
	if err != nil {
		return nil, err
	}
	defer func() {
		if !ok {
			d.data.Close()
		}
	}()
	d.pol = policy.New(cfg.Region, cfg.Policy.ProhibitedRegions, d.ring)
	d.pol.SetLogger(log.With("component", "policy"))
	d.outbox, err = outbox.Open(d.st, outbox.Config{
		Dir:           filepath.Join(cfg.DataDir, "outbox"),
		DeviceKey:     deviceKey,
		DataKeys:      d.data,
		Keyring:       d.ring,
		MaxQueueBytes: cfg.MQTT.MaxQueueBytes,
		ChunkSize:     cfg.MQTT.ChunkSize,
		AckTimeout:    cfg.MQTT.AckTimeout.D(),
		Now:           d.wallNow,
		Logger:        log.With("component", "outbox"),
		MaySend:       d.mayPublish,
		AckedTx:       d.artifactAckedTx,
		DroppedTx:     d.artifactDroppedTx,
		OnAcked:       func(outbox.Meta) { d.stateChanged() },
		OnDropped:     func(outbox.Meta, string) { d.stateChanged() },
	})
	if err != nil {
		return nil, err
	}
	d.events = events.New(d.st, log.With("component", "events"))
	d.recognizer = newRecognizer()
	d.vision, d.vh = d.newVision()
	d.faces = facerec.New(d.st, d.pol, d.analyzer(), d.recognizer, facerec.Config{
		EnrollAnalyzer:   d.enrollFaces(),
		FramesDir:        filepath.Join(cfg.SpoolDir, "frames"),
		Samples:          cfg.Faces.EnrollmentSamples,
		EnrollTimeout:    cfg.Faces.EnrollmentTimeout.D(),
		SightingInterval: cfg.Faces.SightingInterval.D(),
		MaxFileBytes:     cfg.Photos.MaxFileBytes,
		Now:              d.wallNow,
		Logger:           log.With("component", "faces"),
		Ready:            d.vh.mayTry,
		OnFrame:          func(outcome string) { d.metrics.frames.WithLabelValues(outcome).Inc() },
		EnrolledTx: func(tx *bolt.Tx, subject string, slot uint32, samples [][]byte) error {
			if err := d.templateBackupTx(tx, subject, slot, samples); err != nil {
				return err
			}
			return d.eventTx(tx, d.now(), map[string]any{"type": "enrollment_completed", "subject_id": subject})
		},
		OnEnrolled: func(string) { d.stateChanged() },
		EnrollFailedTx: func(tx *bolt.Tx, subject, reason string, p facerec.Progress) error {
			return d.eventTx(tx, d.now(), map[string]any{"type": "enrollment_failed", "subject_id": subject, "reason": reason,
				"samples": p.Samples, "frames": p.Frames, "no_face": p.NoFace, "several_faces": p.SeveralFaces})
		},
		SightingTx: d.sightingTx,
		OnSighting: func(string) { d.stateChanged() },
	})
	d.vault, err = capture.NewVault(filepath.Join(cfg.DataDir, "photos"), d.data, deviceKey)
	if err != nil {
		return nil, err
	}
	d.vault.SetLogger(log.With("component", "vault"))
	var moved bool
	if err := d.st.Update(func(tx *bolt.Tx) (err error) { moved, err = d.migrateTx(tx, deviceKey); return }); err != nil {
		return nil, fmt.Errorf("migrate people's data: %w", err)
	}
	if moved {
		// What the old layout left in freed pages (records and keys sealed
		// by the device key, a person's single key) goes with a fresh file.
		if err := d.st.Rewrite(); err != nil {
			return nil, err
		}
	}
	d.metrics = newMetrics(d)
	masker := faceMasker{an: d.photoFaces(), faces: d.faces} // small faces too: a far stranger is blurred
	d.days = capture.NewDayClock(d.wallNow, d.bootNow, cfg.Location())
	d.selector = capture.NewSelector(capture.SelectorConfig{
		Days:       d.days,
		KeepPerDay: cfg.Photos.KeepPerDay,
		MinScore:   cfg.Photos.MinScore,
		SelectAt:   cfg.Photos.SelectAt,
		Location:   cfg.Location(),
		Now:        d.wallNow,
		Logger:     log.With("component", "selection"),
		Pixels:     d.photoPixels(),
		Alone:      d.photoAlone(),
		SelectedTx: func(tx *bolt.Tx, s capture.Selection) error {
			return d.eventTx(tx, d.now(), map[string]any{"type": "selection_done", "day": s.Day, "kept": len(s.Kept), "deleted": s.Deleted})
		},
		OnSelected: func(s capture.Selection) {
			d.metrics.selectionDone(s)
			d.stateChanged()
		},
		OnFailed: func(day, reason string) {
			d.metrics.selections.WithLabelValues("failed").Inc()
			d.event(map[string]any{"type": "selection_failed", "day": day, "reason": reason})
		},
	}, d.st, d.pol, d.vault, d.photoScorer(), masker, photoUploads{d.outbox})
	d.intake = capture.NewIntake(capture.Config{
		Days:         d.days,
		PhotosDir:    filepath.Join(cfg.SpoolDir, "photos"),
		DailyCap:     cfg.Photos.DailyCap,
		Location:     cfg.Location(),
		MaxFileBytes: cfg.Photos.MaxFileBytes,
		Now:          d.wallNow,
		Logger:       log.With("component", "intake"),
		Pixels:       d.photoPixels(),
		OnDecided: func(o capture.Outcome) {
			d.metrics.photos.WithLabelValues(string(o)).Inc()
			d.stateChanged()
		},
		CapReachedTx: func(tx *bolt.Tx, day string) error {
			return d.eventTx(tx, d.now(), map[string]any{"type": "cap_reached", "day": day, "cap": cfg.Photos.DailyCap})
		},
		OnCapReached: func(string) { d.selector.Request() }, // the day is complete: decide it now
		OnWaitChange: d.stateChanged,
	}, d.st, d.pol, d.vault)

	commandKeys, err := config.PublicKeys(cfg.Security.CommandKeys)
	if err != nil {
		return nil, fmt.Errorf("security.command_keys: %w", err)
	}
	d.disp = command.NewDispatcher(d.st, command.Options{
		Authenticate: command.Verifier(commandKeys),
		DeviceID:     cfg.DeviceID,
		IDRetention:  cfg.Retention.CommandIDs.D(),
		Now:          d.wallNow,
		Logger:       log.With("component", "commands"),
		OnAnswered:   func(typ, code string) { d.metrics.command(typ, code) },
	})
	d.registerCommands()

	d.link, err = link.New(link.Config{
		DeviceID: cfg.DeviceID,
		Broker:   cfg.MQTT.Broker,
		TLS:      link.TLSConfig{CAFile: cfg.MQTT.TLS.CAFile, CertFile: cfg.MQTT.TLS.CertFile, KeyFile: cfg.MQTT.TLS.KeyFile},
		Logger:   log.With("component", "mqtt"),
		// Persistent session (client id from device_id, clean session
		// off) and size checks are the link's defaults; a command too
		// large to queue is still answered from its prefix.
		Oversized: d.disp.HandleOversized,
	}, d.handleCommand)
	if err != nil {
		return nil, err
	}
	fwKeys, err := config.PublicKeys(cfg.Firmware.Keys)
	if err != nil {
		return nil, fmt.Errorf("firmware.keys: %w", err)
	}
	d.fw, err = firmware.New(d.st, firmware.Config{
		Dir:             filepath.Join(cfg.DataDir, "firmware"),
		Installed:       cfg.Firmware.Version,
		Keys:            fwKeys,
		DownloadTimeout: cfg.Firmware.DownloadTimeout.D(),
		Now:             d.wallNow,
		Logger:          log.With("component", "firmware"),
		StagedTx:        d.firmwareStagedTx,
		OnStaged:        func(firmware.Manifest) { d.stateChanged() },
		RejectedTx: func(tx *bolt.Tx, now time.Time, version, reason string) error {
			return d.eventTx(tx, now, map[string]any{"type": "firmware_rejected", "version": version, "reason": reason})
		},
		OnNeed: func(version string, chunks []int) {
			// A request for the chunks still missing: asked again at every
			// connect, so one raised while the link is down would only be
			// stale by the time it left.
			if d.link.Connected() {
				d.event(map[string]any{"type": "firmware_need", "version": version, "chunks": chunks})
			}
		},
	})
	if err != nil {
		return nil, err
	}
	d.link.Subscribe(d.fw.ChunkTopic(), d.fw.HandleChunkMessage)
	d.link.OnConnectionChange(func(up bool) {
		v := 0.0
		if up {
			v = 1
			d.events.Wake() // what waited for the broker goes now
			d.fw.LinkUp()   // an unfinished download asks for its missing chunks
		}
		d.metrics.connected.Set(v)
	})
	d.tech = newTechnician(d)
	d.diag, err = diag.New(diag.Config{
		Socket:      cfg.Diag.Socket,
		AllowedUIDs: cfg.Diag.AllowedUIDs,
		Backend:     d.tech,
		Metrics:     d.metrics.reg,
		Logger:      log.With("component", "diag"),
	})
	if err != nil {
		return nil, err
	}
	ok = true
	return d, nil
}

// migrateTx brings people's data to the current layout at start, in one
// transaction: legacy single keys become per-purpose keys (face data and
// queued artifacts sealed again under the face key), face data of nobody
// who consents to recognition is erased (and the cloud asked to erase its
// copies), templates of another face model are erased and the app told
// that the person must enroll again, and keyring slots nothing uses are
// overwritten.
func (d *Daemon) migrateTx(tx *bolt.Tx, deviceKey []byte) (changed bool, err error) {
	now := d.now()
	moved, err := d.pol.MigratePeopleTx(tx, deviceKey)
	if err != nil {
		return false, err
	}
	for _, p := range moved {
		c, ok, err := d.pol.Consent(tx, p.SubjectID)
		if err != nil || !ok || !c.Has(policy.ScopeFaceRecognition) || p.Key == nil {
			continue // their face data is an orphan: erased below
		}
		_, faceKey, err := d.pol.FaceKeyForWriteTx(tx, p.SubjectID)
		if err != nil {
			return false, err
		}
		_, err = d.faces.ResealTx(tx, p.SubjectID, p.Key, faceKey)
		clear(faceKey)
		clear(p.Key)
		if err != nil {
			return false, err
		}
	}
	sealed, dropped, err := d.outbox.SealPersonLinkedTx(tx, func(subject string) (uint32, bool) {
		slot, key, err := d.pol.FaceKeyForWriteTx(tx, subject)
		clear(key)
		return slot, err == nil
	})
	if err != nil {
		return false, err
	}
	subjects, err := d.faces.Subjects(tx)
	if err != nil {
		return false, err
	}
	orphans := 0
	for _, s := range subjects {
		c, ok, err := d.pol.Consent(tx, s)
		if err != nil {
			return false, err
		}
		if ok && c.Has(policy.ScopeFaceRecognition) {
			continue
		}
		// Face data a withdrawal left behind (an older version's narrower
		// grant did): it goes, and the cloud is asked to erase its copies.
		if _, err := d.forgetTx(tx, now, s, erasure{reason: "orphaned", what: allFaceData, drop: faceKinds, cloud: faceKinds}); err != nil {
			return false, err
		}
		orphans++
	}
	stale, err := d.faces.StaleTemplates(tx)
	if err != nil {
		return false, err
	}
	for _, s := range stale {
		// The recognizer changed: these templates can no longer be used.
		// They go; consent stays; the app learns the person must enroll
		// again (a durable event: the broker may be away at start).
		if _, err := d.forgetTx(tx, now, s, erasure{reason: "model_changed", what: facerec.What{Templates: true}}); err != nil {
			return false, err
		}
		if err := d.faces.MarkEnrollmentNeededTx(tx, s); err != nil {
			return false, err
		}
		if err := d.eventTx(tx, now, map[string]any{"type": "enrollment_needed", "subject_id": s, "reason": "model_changed"}); err != nil {
			return false, err
		}
	}
	scrubbed, err := d.pol.ScrubKeys(tx)
	if err != nil {
		return false, err
	}
	// Photos and artifacts an older version sealed under keys the device
	// key opens move to slots of the data keyring; the slots of deletions a
	// crash cut short, and of admissions or uploads that never committed,
	// are overwritten.
	photos, err := d.vault.MigrateKeysTx(tx)
	if err != nil {
		return false, err
	}
	arts, err := d.outbox.MigrateKeysTx(tx)
	if err != nil {
		return false, err
	}
	dataScrubbed, err := d.scrubDataKeysTx(tx)
	if err != nil {
		return false, err
	}
	if len(moved)+sealed+dropped+orphans+len(stale)+scrubbed+photos+arts+dataScrubbed > 0 {
		d.log.Info("data migrated", "people_moved_to_per_purpose_keys", len(moved), "queued_sealed", sealed,
			"queued_dropped", dropped, "orphaned_face_data_erased", orphans, "templates_of_another_model", len(stale), "slots_erased", scrubbed,
			"photo_keys_moved_to_slots", photos, "artifact_keys_moved_to_slots", arts, "data_slots_erased", dataScrubbed)
	}
	return len(moved)+sealed+dropped+orphans+len(stale)+photos+arts > 0, nil
}

// scrubDataKeysTx overwrites every slot of the data keyring that no photo
// and no queued artifact recorded in tx uses. Only at start: photos and
// artifacts take their slot before the transaction that records them, so
// a scrub while they run could erase a key about to be committed.
func (d *Daemon) scrubDataKeysTx(tx *bolt.Tx) (int, error) {
	photos, err := capture.SlotsTx(tx)
	if err != nil {
		return 0, err
	}
	arts, err := d.outbox.DataSlotsTx(tx)
	if err != nil {
		return 0, err
	}
	return d.data.Scrub(func(slot uint32) bool { return photos[slot] || arts[slot] })
}

// Run runs every service until ctx ends or one fails, then stops them all
// within ShutdownTimeout and closes the store.
func (d *Daemon) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	services := []struct {
		name string
		run  func(context.Context) error
	}{
		{"intake", d.intake.Run},
		{"selection", d.selector.Run},
		{"mqtt", d.link.Run},
		{"diag", d.diag.Run},
		{"technician-audit", d.tech.run},
		{"state", d.publishStates},
		{"janitor", d.janitor},
		{"firmware", d.fw.Run},
		{"outbox", func(ctx context.Context) error { return d.outbox.Run(ctx, d.link) }},
		{"events", func(ctx context.Context) error { return d.events.Run(ctx, d.link) }},
		{"faces", d.faces.Run},
		{"vision-health", d.vh.run},
		{"systemd", d.runSystemd}, // Type=notify readiness and the watchdog
	}
	var wg sync.WaitGroup
	for _, s := range services {
		wg.Go(func() {
			err := s.run(ctx)
			if err != nil && !errors.Is(err, context.Canceled) {
				d.log.Error("service failed", "service", s.name, "err", err)
				cancel(fmt.Errorf("%s: %w", s.name, err))
			}
		})
	}
	d.stateChanged()
	d.log.Info("aibo-privacyd running", "device_id", d.cfg.DeviceID, "schema", d.st.SchemaVersion())
	if d.vision != nil {
		wg.Go(func() { d.probeVision(ctx) })
	}
	<-ctx.Done()
	// Everything stops within ShutdownTimeout: the services, and the
	// vision worker (stopped at once, which also ends a request a
	// selection may be waiting on).
	deadline := time.After(ShutdownTimeout)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	visionDone := make(chan struct{})
	go func() {
		d.vision.Close()
		close(visionDone)
	}()
	stopped := true
	for _, c := range []chan struct{}{done, visionDone} {
		select {
		case <-c:
		case <-deadline:
			stopped = false
		}
		if !stopped {
			break
		}
	}
	if stopped {
		// Every write committed or rolled back: nothing is lost either
		// way, closing only releases the file's lock sooner.
		d.ring.Close()
		d.data.Close()
		d.st.Close()
	} else {
		d.log.Error("services did not stop in time; exiting without closing the store", "timeout", ShutdownTimeout.String())
	}
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// view runs fn in a read transaction.
func (d *Daemon) view(fn func(tx *bolt.Tx) error) error { return d.st.View(fn) }
