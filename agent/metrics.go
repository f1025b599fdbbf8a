package agent

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/aibo-privacy/aibo-privacyd/agent/command"
	"github.com/aibo-privacy/aibo-privacyd/capture"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/facerec"
	"github.com/aibo-privacy/aibo-privacyd/internal/version"
	"github.com/aibo-privacy/aibo-privacyd/sync/outbox"
)

// metrics are the Prometheus series served on the diagnostic socket, named
// for what an operator alerts on: a growing queue, refusals, resends, a
// crashing worker, slow selections, erase requests the cloud has not
// taken. Labels carry outcomes, kinds, command types and codes, each from
// a fixed set: never ids of people, never a string a sender chose.
type metrics struct {
	reg        *prometheus.Registry
	photos     *prometheus.CounterVec
	commands   *prometheus.CounterVec
	connected  prometheus.Gauge
	selections *prometheus.CounterVec
	selectTime prometheus.Histogram
	selected   *prometheus.CounterVec
	frames     *prometheus.CounterVec
	// types are the command types a label may name; any other is
	// "unknown" (a sender must not be able to mint series).
	types map[string]command.Handler
}

func newMetrics(d *Daemon) *metrics {
	m := &metrics{
		reg:   prometheus.NewRegistry(),
		types: d.commands(),
		photos: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aibo_photos_total", Help: "Spool photos by outcome since start.",
		}, []string{"outcome"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aibo_commands_total", Help: "Commands answered, by type (unknown when unreadable or not a contract type) and result code.",
		}, []string{"type", "code"}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "aibo_mqtt_connected", Help: "1 while the MQTT session is up.",
		}),
		selections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aibo_selections_total", Help: "Photo selections by outcome: done, or failed (the photos stay undecided and are tried again).",
		}, []string{"outcome"}),
		selectTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "aibo_selection_duration_seconds", Help: "How long a finished selection took, scoring and commit included.",
			Buckets: []float64{0.5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}),
		selected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aibo_selected_photos_total", Help: "Photos decided by selection: kept (queued for upload) or deleted.",
		}, []string{"decision"}),
		frames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aibo_frames_total", Help: "Spool frames by outcome: unused (nothing to look for), expired (not analysed in 10 s), not_analysed, no_face, several_faces, undescribed, enrollment_sample, sighting, seen_recently, stranger.",
		}, []string{"outcome"}),
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	b := version.Info()
	build := prometheus.NewGauge(prometheus.GaugeOpts{Name: "aibo_build_info",
		Help:        "Always 1; the labels say which build runs: version (devel for an untagged build), commit (-dirty: uncommitted changes), go_version.",
		ConstLabels: prometheus.Labels{"version": b.Version, "commit": b.Commit(), "go_version": b.GoVersion}})
	build.Set(1)
	for _, o := range []string{"refused", "admitted", "over_cap", "invalid"} {
		m.photos.WithLabelValues(o)
	}
	for _, o := range []string{"done", "failed"} {
		m.selections.WithLabelValues(o)
	}
	for _, o := range facerec.FrameOutcomes {
		m.frames.WithLabelValues(o)
	}
	for _, o := range []string{"kept", "deleted"} {
		m.selected.WithLabelValues(o)
	}
	m.reg.MustRegister(build, m.photos, m.commands, m.connected, m.selections, m.selectTime, m.selected, m.frames,
		gauge("aibo_store_bytes", "Size of the bbolt state file.", func() float64 { return float64(d.st.Size()) }),
		gauge("aibo_spool_oldest_waiting_seconds", "How long the oldest photo still in the spool has waited (0: none waits); over 30 s health's vision check is degraded.",
			func() float64 { return d.intake.OldestWaiting().Seconds() }),
		gauge("aibo_events_pending", "Durable events (erase requests, enrollment_needed) the broker has not taken yet; alert when it stays above 0.",
			func() float64 { return float64(d.events.Pending()) }),
		gauge("aibo_outbox_pending_artifacts", "Artifacts queued until the cloud's ok ack.", func() float64 { n, _ := d.outbox.Summary(); return float64(n) }),
		gauge("aibo_outbox_pending_bytes", "Bytes queued until the cloud's ok ack (bounded by mqtt.max_queue_bytes).", func() float64 { _, b := d.outbox.Summary(); return float64(b) }),
		gauge("aibo_outbox_max_bytes", "mqtt.max_queue_bytes: past it new artifacts are refused.", func() float64 { return float64(d.cfg.MQTT.MaxQueueBytes) }),
		outboxCollector{d.outbox},
		visionCollector{d},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// command counts one answered command.
func (m *metrics) command(typ, code string) {
	if _, ok := m.types[typ]; !ok {
		typ = "unknown"
	}
	m.commands.WithLabelValues(typ, code).Inc()
}

// selectionDone counts a finished selection.
func (m *metrics) selectionDone(s capture.Selection) {
	m.selections.WithLabelValues("done").Inc()
	m.selectTime.Observe(s.Took.Seconds())
	m.selected.WithLabelValues("kept").Add(float64(len(s.Kept)))
	m.selected.WithLabelValues("deleted").Add(float64(s.Deleted))
}

// outboxCollector exports the outbox's counters by kind at each scrape.
type outboxCollector struct{ o *outbox.Outbox }

var outboxDescs = map[string]*prometheus.Desc{
	outbox.StatAcked: prometheus.NewDesc("aibo_uploads_total",
		"Artifacts the cloud acknowledged ok (uploads done), by kind.", []string{"kind"}, nil),
	outbox.StatSent: prometheus.NewDesc("aibo_upload_attempts_total",
		"Complete sends of an artifact (manifest and every chunk), resends included, by kind.", []string{"kind"}, nil),
	outbox.StatResent: prometheus.NewDesc("aibo_upload_resends_total",
		"Sends of an artifact already sent (no ack in ack_timeout, a nack, or a restart), by kind.", []string{"kind"}, nil),
	outbox.StatNacked: prometheus.NewDesc("aibo_upload_nacks_total",
		"Not-ok acks from the cloud, by kind.", []string{"kind"}, nil),
	outbox.StatRefusedFull: prometheus.NewDesc("aibo_outbox_full_refusals_total",
		"Artifacts refused because the queue was at mqtt.max_queue_bytes (a photo not kept, an export answered busy), by kind.", []string{"kind"}, nil),
}

func (c outboxCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range outboxDescs {
		ch <- d
	}
}

func (c outboxCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.o.Stats()
	for name, desc := range outboxDescs {
		for _, k := range policy.Kinds {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(st[name][k]), string(k))
		}
	}
}

// visionCollector exports the worker's supervision counters.
type visionCollector struct{ d *Daemon }

var (
	visionAvailable = prometheus.NewDesc("aibo_vision_worker_available", "1 while images can be judged: the worker's binary and face nets check out and a worker starts with them; 0: photos wait in the spool and frames are not analysed (health's vision check says why).", nil, nil)
	visionUp        = prometheus.NewDesc("aibo_vision_worker_up", "1 while a worker process runs (it is started on demand and stopped when idle).", nil, nil)
	visionStarts    = prometheus.NewDesc("aibo_vision_worker_starts_total", "Worker processes started.", nil, nil)
	visionCrashes   = prometheus.NewDesc("aibo_vision_worker_crashes_total", "Workers that died or broke the protocol during a request (the image counts as unscorable).", nil, nil)
	visionTimeouts  = prometheus.NewDesc("aibo_vision_worker_timeouts_total", "Workers killed for a request over its time limit.", nil, nil)
	visionRequests  = prometheus.NewDesc("aibo_vision_requests_total", "Requests sent to the worker.", nil, nil)
	visionFailed    = prometheus.NewDesc("aibo_vision_request_failures_total", "Requests that ended in an error of any kind (an undecodable image included).", nil, nil)
	visionRetries   = prometheus.NewDesc("aibo_vision_retries_total", "Requests (or a photo's whole preparation) tried again in a fresh worker after the one handling them died or timed out.", nil, nil)
	visionAlone     = prometheus.NewDesc("aibo_vision_alone_total", "Photos readied to leave by a worker of their own.", nil, nil)
	visionBad       = prometheus.NewDesc("aibo_vision_bad_answers_total", "Worker answers that failed the daemon's checks (the worker was killed).", nil, nil)
	visionRefused   = prometheus.NewDesc("aibo_vision_refused_total", "Worker starts refused because the worker could not be confined.", nil, nil)
	visionConfined  = prometheus.NewDesc("aibo_vision_confined", "1 when the launcher last confined a worker (Landlock and the seccomp allow-list in force); 0 when it could not (no worker runs) or has not run yet.", nil, nil)
	visionLayer     = prometheus.NewDesc("aibo_vision_confinement_layer", "Each layer of the worker's confinement in force, by name: landlock (the value is its ABI), seccomp, namespace_net, namespace_pid, namespace_user, cgroup. A layer not in force is absent.", []string{"layer"}, nil)
)

func (c visionCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{visionAvailable, visionUp, visionStarts, visionCrashes, visionTimeouts, visionRequests, visionFailed,
		visionRetries, visionAlone, visionBad, visionRefused, visionConfined, visionLayer} {
		ch <- d
	}
}

func (c visionCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	counter := func(d *prometheus.Desc, v int) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	s := c.d.vision.Stats()
	gauge(visionAvailable, map[bool]float64{true: 1}[c.d.vh.status().OK])
	gauge(visionUp, map[bool]float64{true: 1}[s.Running])
	counter(visionStarts, s.Starts)
	counter(visionCrashes, s.Crashes)
	counter(visionTimeouts, s.Timeouts)
	counter(visionRequests, s.Requests)
	counter(visionFailed, s.Failed)
	counter(visionRetries, s.Retries)
	counter(visionAlone, s.Alone)
	counter(visionBad, s.BadAnswers)
	counter(visionRefused, s.Refused)
	conf := c.d.vision.Confinement()
	gauge(visionConfined, map[bool]float64{true: 1}[conf.Confined()])
	for layer := range conf.Layers() {
		v := 1.0
		if layer == "landlock" {
			v = float64(conf.Landlock)
		}
		if layer != "uid" {
			ch <- prometheus.MustNewConstMetric(visionLayer, prometheus.GaugeValue, v, layer)
		}
	}
}
