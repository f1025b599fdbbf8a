package agent

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the Prometheus series served on the diagnostic socket. Labels
// carry outcomes, command types and codes: never ids of people.
type metrics struct {
	reg       *prometheus.Registry
	photos    *prometheus.CounterVec
	commands  *prometheus.CounterVec
	connected prometheus.Gauge
}

func newMetrics(d *Daemon) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		photos: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aibo_photos_total", Help: "Spool photos by outcome since start.",
		}, []string{"outcome"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aibo_commands_total", Help: "Commands answered, by type and result code.",
		}, []string{"type", "code"}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "aibo_mqtt_connected", Help: "1 while the MQTT session is up.",
		}),
	}
	storeBytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "aibo_store_bytes", Help: "Size of the bbolt state file.",
	}, func() float64 { return float64(d.st.Size()) })
	eventsPending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "aibo_events_pending", Help: "Erase requests kept until the broker takes them.",
	}, func() float64 { return float64(d.events.Pending()) })
	uptime := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "aibo_uptime_seconds", Help: "Seconds since the daemon started.",
	}, func() float64 { return d.now().Sub(d.started).Seconds() })
	for _, o := range []string{"refused", "admitted", "over_cap", "invalid"} {
		m.photos.WithLabelValues(o)
	}
	m.reg.MustRegister(m.photos, m.commands, m.connected, storeBytes, eventsPending, uptime,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
