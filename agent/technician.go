package agent

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/aibo-privacy/aibo-privacyd/agent/diag"
	"github.com/aibo-privacy/aibo-privacyd/capture"
	"github.com/aibo-privacy/aibo-privacyd/core/audit"
	"github.com/aibo-privacy/aibo-privacyd/facerec"
	"github.com/aibo-privacy/aibo-privacyd/firmware"
	"github.com/aibo-privacy/aibo-privacyd/internal/netsums"
)

// technician answers the diagnostic socket: counts, ages and ids only.
type technician struct {
	d     *Daemon
	tally *audit.Tally // technician_access, aggregated per accessInterval
}

// accessInterval is the interval technician_access records aggregate:
// one record per uid, method, path and status per interval, with a count.
const accessInterval = time.Minute

func newTechnician(d *Daemon) *technician {
	return &technician{d: d, tally: audit.NewTally(d.st, "technician_access", accessInterval, d.wallNow)}
}

// run appends the aggregated access counts as each interval ends, and what
// is left when ctx ends (before the store closes).
func (t *technician) run(ctx context.Context) error {
	return t.tally.Run(ctx, func(err error) {
		t.d.log.Warn("technician access counts not recorded yet; kept for the next try", "err", err)
	})
}

// minFreeBytes below which health reports the disk as degraded.
const minFreeBytes = 64 << 20

func (t *technician) Health(ctx context.Context) diag.Health {
	d := t.d
	checks := map[string]diag.Check{}
	// A read answers on a file system that takes no more writes (full,
	// read-only, failing): the last commit says whether it does.
	err := d.view(func(tx *bolt.Tx) error { _, err := d.pol.Read(tx); return err })
	if err == nil {
		err = d.st.CommitErr()
	}
	checks["store"] = check(err == nil, errDetail(err))
	checks["mqtt"] = check(d.link.Connected(), map[bool]string{true: "connected", false: "not connected"}[d.link.Connected()])
	checks["spool"] = dirCheck(filepath.Join(d.cfg.SpoolDir, "photos"))
	if st := d.intakeStatus(); st.Status != "ok" {
		checks["spool"] = check(false, "waiting since "+st.Since.Format(time.RFC3339)+" ("+st.Reason+"): photos stay in the spool until they can be decided")
	}
	checks["vision"] = t.visionCheck()
	var fs unix.Statfs_t
	if err := unix.Statfs(d.cfg.DataDir, &fs); err != nil {
		checks["disk"] = check(false, err.Error())
	} else {
		free := int64(fs.Bavail) * int64(fs.Bsize)
		checks["disk"] = check(free >= minFreeBytes, strconv.FormatInt(free>>20, 10)+" MiB free")
	}
	h := diag.Health{Status: "ok", Checks: checks}
	for _, c := range checks {
		if !c.OK {
			h.Status = "degraded"
		}
	}
	return h
}

func check(ok bool, detail string) diag.Check { return diag.Check{OK: ok, Detail: detail} }

// visionCheck says whether images can be judged (contract v3, section 7):
// degraded, with the reason, while the worker cannot start (its binary,
// its face nets, or what it said when it exited) or a spool photo has
// waited over 30 s.
func (t *technician) visionCheck() diag.Check {
	d := t.d
	vs := d.vh.status()
	var c diag.Check
	switch {
	case !vs.Checked:
		c = check(false, "not checked yet: the daemon started "+time.Since(d.started).Round(time.Millisecond).String()+" ago")
	case !vs.OK:
		c = check(false, "images cannot be judged since "+vs.Since.UTC().Format(time.RFC3339)+": "+vs.Reason)
	case d.vision.Stats().Running:
		c = check(true, "a worker runs")
	default:
		c = check(true, "a worker starts with its face nets (none runs now)")
	}
	if w := d.intake.OldestWaiting(); w > spoolWaitLimit {
		c.OK = false
		c.Detail = "a photo has waited " + w.Round(time.Second).String() + " in the spool (over " + spoolWaitLimit.String() + "); " + c.Detail
	}
	return c
}

func errDetail(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func dirCheck(dir string) diag.Check {
	st, err := os.Stat(dir)
	if err != nil {
		return check(false, err.Error())
	}
	if !st.IsDir() {
		return check(false, "not a directory")
	}
	if err := unix.Access(dir, unix.W_OK|unix.R_OK); err != nil {
		return check(false, "not writable: "+err.Error())
	}
	return check(true, "")
}

// StatusReport is the answer of /v1/status.
type StatusReport struct {
	ReportedState
	Broker        BrokerStatus `json:"broker"`
	UptimeSeconds float64      `json:"uptime_seconds"`
	StoreBytes    int64        `json:"store_bytes"`
	SchemaVersion int          `json:"schema_version"`
	DailyCap      int          `json:"daily_cap"`
	Prohibited    bool         `json:"region_prohibited"`
	Update        UpdateStatus `json:"firmware_update"`
	// Enrollment is the open enrollment window and what its frames
	// showed (samples taken, frames with no face or several); absent
	// when none is open.
	Enrollment *facerec.Enrollment `json:"enrollment,omitempty"`
	Vision     VisionStatus        `json:"vision"`
}

// VisionStatus is the vision worker's confinement as /v1/status shows it:
// each layer in force by name, never "sandboxed" for one that is not.
type VisionStatus struct {
	// State: "confined", "refused" (no worker runs: Refused says why) or
	// "unchecked" (no launcher has run yet).
	State   string            `json:"state"`
	Refused string            `json:"refused,omitempty"`
	Layers  map[string]string `json:"layers,omitempty"`
}

// visionStatus reads the client's record of the confinement.
func (d *Daemon) visionStatus() VisionStatus {
	conf := d.vision.Confinement()
	st := VisionStatus{State: "unchecked", Refused: conf.Refused, Layers: conf.Layers()}
	switch {
	case conf.Refused != "":
		st.State = "refused"
	case conf.Confined():
		st.State = "confined"
	}
	return st
}

// UpdateStatus is what the status adds to the reported state's firmware
// (installed and staged version, not repeated here): the fallback image,
// the anti-rollback mark, the staged image's policy and the download in
// progress.
type UpdateStatus struct {
	Fallback             string             `json:"fallback,omitempty"`
	Highest              string             `json:"highest"`
	Download             *firmware.Progress `json:"download,omitempty"`
	MaterialPolicyChange bool               `json:"material_policy_change,omitempty"`
	PolicyVersion        string             `json:"policy_version,omitempty"`
}

// BrokerStatus is the MQTT connection as a technician sees it.
type BrokerStatus struct {
	URL       string `json:"url"`
	Connected bool   `json:"connected"`
}

func (t *technician) Status(ctx context.Context) (any, error) {
	d := t.d
	var s ReportedState
	var fw firmware.Status
	err := d.view(func(tx *bolt.Tx) (err error) {
		if s, err = d.readState(tx); err != nil {
			return err
		}
		fw, err = d.fw.Status(tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.UpdatedAt = d.now().UTC()
	var enrolling *facerec.Enrollment
	if e, ok := d.faces.Enrollment(); ok {
		enrolling = &e
	}
	return StatusReport{
		Enrollment:    enrolling,
		ReportedState: s,
		Broker:        BrokerStatus{URL: d.cfg.MQTT.Broker, Connected: d.link.Connected()},
		UptimeSeconds: time.Since(d.started).Round(time.Second).Seconds(),
		StoreBytes:    d.st.Size(),
		SchemaVersion: d.st.SchemaVersion(),
		DailyCap:      d.cfg.Photos.DailyCap,
		Prohibited:    d.pol.Prohibited(s.Region),
		Update: UpdateStatus{Fallback: fw.Fallback, Highest: fw.Highest, Download: fw.Download,
			MaterialPolicyChange: fw.MaterialPolicyChange, PolicyVersion: fw.PolicyVersion},
		Vision: d.visionStatus(),
	}, nil
}

func (t *technician) Audit(ctx context.Context, limit int) ([]audit.Record, error) {
	var out []audit.Record
	err := t.d.view(func(tx *bolt.Tx) (err error) { out, err = audit.Newest(tx, limit); return })
	return out, err
}

func (t *technician) AuditVerify(ctx context.Context) (audit.Report, error) {
	var rep audit.Report
	err := t.d.view(func(tx *bolt.Tx) error { rep = audit.Verify(tx); return nil })
	return rep, err
}

// Access puts every technician request on record with the peer's uid,
// aggregated (see audit.Tally): the first request of its kind in an
// interval is committed before the answer leaves, repeats are counted and
// recorded when the interval ends. An error means the request could not be
// audited; diag then answers 503 instead, and that refusal is counted.
func (t *technician) Access(ctx context.Context, uid uint32, method, path string, status int) error {
	f := map[string]string{"uid": strconv.FormatUint(uint64(uid), 10), "method": method, "path": path, "status": strconv.Itoa(status)}
	err := t.tally.Note(f)
	if err != nil {
		f["status"] = "503"
		t.tally.Count(f)
	}
	return err
}

// Overloaded counts a connection turned away because too many were open.
func (t *technician) Overloaded(uid uint32) {
	t.tally.Count(map[string]string{"uid": strconv.FormatUint(uint64(uid), 10), "method": "-", "path": "(too many connections)", "status": "503"})
}

// cascades are the detection models the vision worker loads (capture/score's
// *Cascade constants: TestSelftestChecksTheCascadesTheWorkerLoads).
var cascades = []string{
	"lbpcascades/lbpcascade_frontalface.xml",
	"haarcascades/haarcascade_frontalface_default.xml",
	"haarcascades/haarcascade_frontalface_alt2.xml",
	"haarcascades/haarcascade_eye.xml",
}

// Selftest runs the deeper checks a technician asks for: every page of the
// store, a write in the spool, the models, the broker and the clock.
func (t *technician) Selftest(ctx context.Context) diag.Health {
	d := t.d
	checks := map[string]diag.Check{}
	if err := d.st.Check(); err != nil {
		checks["store_integrity"] = check(false, err.Error())
	} else {
		checks["store_integrity"] = check(true, "schema "+strconv.Itoa(d.st.SchemaVersion())+", "+strconv.FormatInt(d.st.Size()>>10, 10)+" KiB")
	}
	checks["spool_writable"] = writeProbe(filepath.Join(d.cfg.SpoolDir, "photos"))
	checks["data_writable"] = writeProbe(d.cfg.DataDir)
	checks["models"] = t.modelsCheck(ctx)
	checks["broker"] = check(d.link.Connected(), map[bool]string{true: "connected to " + d.cfg.MQTT.Broker, false: "not connected to " + d.cfg.MQTT.Broker}[d.link.Connected()])
	checks["clock"] = t.clockCheck()
	h := diag.Health{Status: "ok", Checks: checks}
	for _, c := range checks {
		if !c.OK {
			h.Status = "degraded"
		}
	}
	return h
}

// modelsCheck checks what the worker loads (contract v3, section 7): the
// cascades are readable, the face nets match their SHA256SUMS, and a
// worker loads them and answers.
func (t *technician) modelsCheck(ctx context.Context) diag.Check {
	d := t.d
	missing := []string{}
	for _, c := range cascades {
		if f, err := os.Open(filepath.Join(d.cfg.Vision.ModelsDir, c)); err != nil {
			missing = append(missing, c)
		} else {
			f.Close()
		}
	}
	if len(missing) > 0 {
		return check(false, "cascades missing in "+d.cfg.Vision.ModelsDir+": "+strings.Join(missing, ", "))
	}
	if _, err := fileIdentity(d.vh.worker); err != nil {
		return check(false, "vision worker "+d.vh.worker+": "+err.Error())
	}
	if err := netsums.Verify(d.vh.nets); err != nil {
		return check(false, err.Error())
	}
	t0 := time.Now()
	pctx, cancel := context.WithTimeout(ctx, visionProbeTimeout)
	defer cancel()
	if err := d.vh.freshProbe(pctx); err != nil {
		return check(false, "face nets match "+netsums.SumsFile+", but a fresh worker did not load them: "+workerReason(err))
	}
	return check(true, strconv.Itoa(len(cascades))+" cascades readable; "+strconv.Itoa(len(netsums.Files))+" face nets match "+
		netsums.SumsFile+" and a fresh worker loaded them ("+time.Since(t0).Round(time.Millisecond).String()+")")
}

// writeProbe creates, syncs and removes a dot file (never a name the
// intake owns).
func writeProbe(dir string) diag.Check {
	f, err := os.CreateTemp(dir, ".selftest-*")
	if err != nil {
		return check(false, err.Error())
	}
	name := f.Name()
	_, werr := f.Write([]byte("selftest"))
	serr := f.Sync()
	f.Close()
	os.Remove(name)
	if werr != nil || serr != nil {
		return check(false, "write failed")
	}
	return check(true, "")
}

// earliestSaneTime is before any build of this daemon: a clock behind it has
// lost its time (a dead RTC battery).
var earliestSaneTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func (t *technician) clockCheck() diag.Check {
	d := t.d
	now := d.now()
	if now.Before(earliestSaneTime) {
		return check(false, "clock reads "+now.UTC().Format(time.RFC3339)+", before this firmware was built")
	}
	var day string
	_ = d.view(func(tx *bolt.Tx) error { day = d.days.Day(tx); return nil })
	if today := capture.LocalDay(now, d.cfg.Location()); day > today {
		return check(false, "clock is behind the latest day already counted ("+day+"); photos count against that day")
	}
	if lead := d.days.Lead(); lead > capture.MaxClockLead {
		return check(false, "clock ran "+lead.Round(time.Minute).String()+" ahead of the boot clock since the day began; photos count against "+day+" until boot time reaches its end")
	}
	return check(true, now.UTC().Format(time.RFC3339))
}

// Queue is the outbox by kind: counts, bytes and the oldest age.
func (t *technician) Queue(ctx context.Context) (any, error) {
	pending, bytes := t.d.outbox.Summary()
	return map[string]any{"pending": pending, "bytes": bytes, "kinds": t.d.outbox.ByKind(), "events_pending": t.d.events.Pending()}, nil
}
