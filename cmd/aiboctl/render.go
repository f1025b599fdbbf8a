package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// renderStatus prints /v1/status as rows, with the uptime as a duration
// ("uptime  2h3m10s") instead of a count of seconds.
func renderStatus(w io.Writer, body []byte) (int, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v map[string]any
	if err := dec.Decode(&v); err != nil {
		return renderFlat(w, body)
	}
	if n, ok := v["uptime_seconds"].(json.Number); ok {
		if f, err := n.Float64(); err == nil {
			delete(v, "uptime_seconds")
			v["uptime"] = age(f)
		}
	}
	out, err := json.Marshal(v)
	if err != nil {
		return exitDaemonError, err
	}
	return renderFlat(w, out)
}

// age formats seconds as a duration rounded to the second ("1h2m3s").
func age(seconds float64) string {
	if seconds <= 0 || math.IsNaN(seconds) || math.IsInf(seconds, 0) {
		return "0s"
	}
	return (time.Duration(math.Round(seconds)) * time.Second).String()
}

// inventoryAnswer mirrors agent.Inventory.
type inventoryAnswer struct {
	GeneratedAt time.Time `json:"generated_at"`
	Categories  map[string]struct {
		Count            int     `json:"count"`
		Bytes            int64   `json:"bytes"`
		OldestAgeSeconds float64 `json:"oldest_age_seconds"`
		NewestAgeSeconds float64 `json:"newest_age_seconds"`
		Unreadable       int     `json:"unreadable"`
		ErasedBy         string  `json:"erased_by"`
	} `json:"categories"`
	Subjects []struct {
		SubjectID           string   `json:"subject_id"`
		Consent             bool     `json:"consent"`
		Scopes              []string `json:"scopes"`
		Minor               bool     `json:"minor"`
		Templates           int      `json:"templates"`
		EnrollmentNeeded    bool     `json:"enrollment_needed"`
		Sightings           int      `json:"sightings"`
		QueuedArtifacts     int      `json:"queued_artifacts"`
		NextSightingErasure string   `json:"next_sighting_erasure"`
	} `json:"subjects"`
}

// renderInventory prints one table of categories and one of subjects
// (opaque ids only; "subjects: none" when the device holds nobody).
func renderInventory(w io.Writer, body []byte) (int, error) {
	var inv inventoryAnswer
	if err := json.Unmarshal(body, &inv); err != nil || inv.Categories == nil {
		return renderFlat(w, body) // not the shape this aiboctl knows
	}
	names := make([]string, 0, len(inv.Categories))
	for n := range inv.Categories {
		names = append(names, n)
	}
	sort.Strings(names)
	tw := newTable(w)
	fmt.Fprintln(tw, "CATEGORY\tCOUNT\tBYTES\tOLDEST\tNEWEST\tERASED BY")
	for _, n := range names {
		c := inv.Categories[n]
		count := strconv.Itoa(c.Count)
		if c.Unreadable > 0 {
			count += fmt.Sprintf(" (%d unreadable)", c.Unreadable)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", printable(n), count, c.Bytes, ageOrDash(c.OldestAgeSeconds), ageOrDash(c.NewestAgeSeconds), printable(c.ErasedBy))
	}
	if err := tw.Flush(); err != nil {
		return exitDaemonError, err
	}
	fmt.Fprintln(w)
	if len(inv.Subjects) == 0 {
		fmt.Fprintln(w, "subjects: none")
		return exitOK, nil
	}
	tw = newTable(w)
	fmt.Fprintln(tw, "SUBJECT\tCONSENT\tSCOPES\tMINOR\tTEMPLATES\tSIGHTINGS\tQUEUED\tNEXT SIGHTING ERASURE")
	for _, s := range inv.Subjects {
		scopes := "-"
		if len(s.Scopes) > 0 {
			scopes = printable(strings.Join(s.Scopes, ","))
		}
		templates := strconv.Itoa(s.Templates)
		if s.EnrollmentNeeded {
			templates += " (enroll again)"
		}
		next := "-"
		if s.NextSightingErasure != "" {
			next = printable(s.NextSightingErasure)
		}
		fmt.Fprintf(tw, "%s\t%t\t%s\t%t\t%s\t%d\t%d\t%s\n", printable(s.SubjectID), s.Consent, scopes, s.Minor, templates, s.Sightings, s.QueuedArtifacts, next)
	}
	return exitOK, tw.Flush()
}

func ageOrDash(seconds float64) string {
	if seconds <= 0 {
		return "-"
	}
	return age(seconds)
}

// metricFamily is one family of metricsJSON's answer.
type metricFamily struct {
	Type    string         `json:"type"`
	Help    string         `json:"help,omitempty"`
	Metrics []metricSample `json:"metrics"`
}

type metricSample struct {
	Labels    map[string]string  `json:"labels,omitempty"`
	Value     *float64           `json:"value,omitempty"`
	Count     *uint64            `json:"count,omitempty"`
	Sum       *float64           `json:"sum,omitempty"`
	Buckets   map[string]uint64  `json:"buckets,omitempty"`   // histogram: upper bound -> cumulative count
	Quantiles map[string]float64 `json:"quantiles,omitempty"` // summary
}

// metricsJSON turns the Prometheus text the daemon serves into one JSON
// object keyed by family name. NaN and infinities, which JSON cannot
// carry, are left out.
func metricsJSON(w io.Writer, text []byte) error {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		return err
	}
	out := make(map[string]metricFamily, len(fams))
	for name, f := range fams {
		mf := metricFamily{Type: strings.ToLower(f.GetType().String()), Help: f.GetHelp(), Metrics: []metricSample{}}
		for _, m := range f.GetMetric() {
			s := metricSample{}
			if len(m.GetLabel()) > 0 {
				s.Labels = map[string]string{}
				for _, l := range m.GetLabel() {
					s.Labels[l.GetName()] = l.GetValue()
				}
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				s.Value = finite(m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				s.Value = finite(m.GetGauge().GetValue())
			case dto.MetricType_UNTYPED:
				s.Value = finite(m.GetUntyped().GetValue())
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				h := m.GetHistogram()
				c := h.GetSampleCount()
				s.Count, s.Sum, s.Buckets = &c, finite(h.GetSampleSum()), map[string]uint64{}
				for _, b := range h.GetBucket() {
					s.Buckets[strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64)] = b.GetCumulativeCount()
				}
			case dto.MetricType_SUMMARY:
				sm := m.GetSummary()
				c := sm.GetSampleCount()
				s.Count, s.Sum, s.Quantiles = &c, finite(sm.GetSampleSum()), map[string]float64{}
				for _, q := range sm.GetQuantile() {
					if v := finite(q.GetValue()); v != nil {
						s.Quantiles[strconv.FormatFloat(q.GetQuantile(), 'g', -1, 64)] = *v
					}
				}
			}
			mf.Metrics = append(mf.Metrics, s)
		}
		out[name] = mf
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func finite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}
