// Package agent is the composition of the daemon: it opens the store once,
// builds the services (intake, MQTT link, command handlers, diagnostic
// socket), wires them through small interfaces and runs them until the
// context ends. Only cmd/aibo-privacyd imports it. It never links OpenCV.
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
	"github.com/aibo-privacy/aibo-privacyd/agent/config"
	"github.com/aibo-privacy/aibo-privacyd/agent/diag"
	"github.com/aibo-privacy/aibo-privacyd/agent/vision"
	"github.com/aibo-privacy/aibo-privacyd/capture"
	"github.com/aibo-privacy/aibo-privacyd/core/keys"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
	"github.com/aibo-privacy/aibo-privacyd/facerec"
	"github.com/aibo-privacy/aibo-privacyd/firmware"
	"github.com/aibo-privacy/aibo-privacyd/sync/events"
	"github.com/aibo-privacy/aibo-privacyd/sync/link"
	"github.com/aibo-privacy/aibo-privacyd/sync/outbox"
)

// ShutdownTimeout bounds how long the services get to stop.
const ShutdownTimeout = 5 * time.Second

// Daemon is the running agent.
type Daemon struct {
	cfg     config.Config
	log     *slog.Logger
	now     func() time.Time
	started time.Time

	st        *store.Store
	deviceKey []byte
	ring      *keys.Keyring // the keys that seal each person's key
	outbox    *outbox.Outbox
	events    *events.Queue // erase requests, kept until the broker has them
	faces     *facerec.Service
	pol       *policy.Policy
	vault     *capture.Vault
	intake    *capture.Intake
	link      *link.Link
	disp      *command.Dispatcher
	diag      *diag.Server
	fw        *firmware.Manager
	metrics   *metrics

	vision *vision.Client // nil when the worker binary is missing
	scorer photoScorer
	selMu  sync.Mutex      // one selection at a time
	ctx    context.Context // the daemon's run context, for background work
	bg     sync.WaitGroup  // background work to wait for at shutdown

	stateDirty chan struct{}
	lastState  string // owned by publishStates
}

// New opens the store and builds every service; nothing runs yet.
func New(cfg config.Config, log *slog.Logger) (*Daemon, error) {
	d := &Daemon{cfg: cfg, log: log, now: time.Now, started: time.Now(), stateDirty: make(chan struct{}, 1), ctx: context.Background()}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
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
	d.deviceKey = deviceKey
	d.vision = d.newVision()
	d.scorer = d.photoScorer()
	d.ring, err = keys.OpenKeyring(filepath.Join(cfg.DataDir, "people.keys"))
	if err != nil {
		return nil, err
	}
	defer func() {
		if !ok {
			d.ring.Close()
		}
	}()
	d.pol = policy.New(cfg.Region, cfg.Policy.ProhibitedRegions, d.ring)
	if err := d.st.Update(func(tx *bolt.Tx) error {
		adopted, err := d.pol.AdoptLegacyKeys(tx, deviceKey)
		if err != nil {
			return err
		}
		// slots of revocations or grants a crash cut short
		scrubbed, err := d.pol.ScrubKeys(tx)
		if adopted+scrubbed > 0 {
			log.Info("people's keys", "adopted_into_keyring", adopted, "slots_erased", scrubbed)
		}
		return err
	}); err != nil {
		return nil, fmt.Errorf("people's keys: %w", err)
	}
	d.outbox, err = outbox.Open(d.st, outbox.Config{
		Dir:           filepath.Join(cfg.DataDir, "outbox"),
		DeviceKey:     deviceKey,
		MaxQueueBytes: cfg.MQTT.MaxQueueBytes,
		ChunkSize:     cfg.MQTT.ChunkSize,
		AckTimeout:    cfg.MQTT.AckTimeout.D(),
		Now:           d.now,
		Logger:        log.With("service", "outbox"),
		Gate:          d.mayPublish,
		OnAcked:       d.artifactAcked,
		OnDropped:     d.artifactDropped,
	})
	if err != nil {
		return nil, err
	}
	d.events = events.New(d.st, log.With("service", "events"))
	d.faces = facerec.New(d.st, d.pol, d.analyzer(), d.recognizer(), facerec.Config{
		FramesDir:        filepath.Join(cfg.SpoolDir, "frames"),
		Samples:          cfg.Faces.EnrollmentSamples,
		EnrollTimeout:    cfg.Faces.EnrollmentTimeout.D(),
		SightingInterval: cfg.Faces.SightingInterval.D(),
		MaxFileBytes:     cfg.Photos.MaxFileBytes,
		Now:              d.now,
		Logger:           log.With("service", "faces"),
		OnEnrolled: func(subject string) {
			d.event(map[string]any{"type": "enrollment_completed", "subject_id": subject})
			d.stateChanged()
		},
		OnEnrollFailed: func(subject, reason string) {
			d.event(map[string]any{"type": "enrollment_failed", "subject_id": subject, "reason": reason})
		},
		EnrolledTx:    d.templateBackup,
		OnSighting:    d.sightingArtifact,
		AfterSighting: func(string) { d.stateChanged() },
	})
	d.metrics = newMetrics(d)
	d.vault, err = capture.NewVault(filepath.Join(cfg.DataDir, "photos"), deviceKey)
	if err != nil {
		return nil, err
	}
	d.intake = capture.NewIntake(capture.Config{
		PhotosDir:    filepath.Join(cfg.SpoolDir, "photos"),
		DailyCap:     cfg.Photos.DailyCap,
		Location:     cfg.Location(),
		MaxFileBytes: cfg.Photos.MaxFileBytes,
		Now:          d.now,
		Logger:       log.With("service", "intake"),
		Decided: func(o capture.Outcome) {
			d.metrics.photos.WithLabelValues(string(o)).Inc()
			d.stateChanged()
		},
		CapReached: func(day string) {
			d.event(map[string]any{"type": "cap_reached", "day": day, "cap": cfg.Photos.DailyCap})
		},
	}, d.st, d.pol, d.vault)

	commandKeys, err := config.PublicKeys(cfg.Security.CommandKeys)
	if err != nil {
		return nil, fmt.Errorf("security.command_keys: %w", err)
	}
	d.disp = command.NewDispatcher(d.st, command.Options{
		Authenticate: command.Verifier(commandKeys),
		IDRetention:  cfg.Retention.CommandIDs.D(),
		Now:          d.now,
		Logger:       log.With("service", "commands"),
		Observe:      func(typ, code string) { d.metrics.commands.WithLabelValues(typ, code).Inc() },
	})
	d.registerCommands()

	d.link, err = link.New(link.Config{
		DeviceID: cfg.DeviceID,
		Broker:   cfg.MQTT.Broker,
		TLS:      link.TLSConfig{CAFile: cfg.MQTT.TLS.CAFile, CertFile: cfg.MQTT.TLS.CertFile, KeyFile: cfg.MQTT.TLS.KeyFile},
		Logger:   log.With("service", "mqtt"),
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
		Now:             d.now,
		Logger:          log.With("service", "firmware"),
		StagedTx:        d.pauseForMaterialChange,
		OnStaged: func(m firmware.Manifest) {
			d.event(map[string]any{"type": "firmware_staged", "version": m.Version})
			d.stateChanged()
		},
		OnRejected: func(version, reason string) {
			d.event(map[string]any{"type": "firmware_rejected", "version": version, "reason": reason})
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
		}
		d.metrics.connected.Set(v)
	})
	d.diag, err = diag.New(diag.Config{
		Socket:      cfg.Diag.Socket,
		AllowedUIDs: cfg.Diag.AllowedUIDs,
		Backend:     &technician{d: d},
		Metrics:     d.metrics.reg,
		Logger:      log.With("service", "diag"),
	})
	if err != nil {
		return nil, err
	}
	ok = true
	return d, nil
}

// Run runs every service until ctx ends or one fails, then stops them all
// within ShutdownTimeout and closes the store.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.st.Close()
	defer d.ring.Close()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	d.ctx = ctx
	services := []struct {
		name string
		run  func(context.Context) error
	}{
		{"intake", d.intake.Run},
		{"mqtt", d.link.Run},
		{"diag", d.diag.Run},
		{"state", d.publishStates},
		{"janitor", d.janitor},
		{"firmware", d.fw.Run},
		{"outbox", func(ctx context.Context) error { return d.outbox.Run(ctx, d.link) }},
		{"events", func(ctx context.Context) error { return d.events.Run(ctx, d.link) }},
		{"faces", d.faces.Run},
		{"selection", d.selector},
	}
	var wg sync.WaitGroup
	for _, s := range services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.run(ctx)
			if err != nil && !errors.Is(err, context.Canceled) {
				d.log.Error("service failed", "service", s.name, "err", err)
				cancel(fmt.Errorf("%s: %w", s.name, err))
			}
		}()
	}
	d.stateChanged()
	d.log.Info("aibo-privacyd running", "device_id", d.cfg.DeviceID, "schema", d.st.SchemaVersion())
	<-ctx.Done()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(ShutdownTimeout):
		d.log.Error("services did not stop in time", "timeout", ShutdownTimeout)
	}
	d.bg.Wait() // a selection in flight stops at its next step
	if d.vision != nil {
		d.vision.Close()
	}
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// view runs fn in a read transaction.
func (d *Daemon) view(fn func(tx *bolt.Tx) error) error { return d.st.View(fn) }
