package descriptor

import (
	"errors"
	"math"
	"slices"
	"sort"
)

// Calibration is what Calibrate derives from enrollment descriptors.
type Calibration struct {
	Params Params
	// Impostor are the enrollment impostor trials (each sample probed
	// against galleries without its person).
	Impostor []Match
	// Genuine are the leave-one-out genuine trials (each sample probed
	// against everybody, its person holding the other samples), with the
	// person each probe belongs to.
	Genuine []Match
	Person  []string
}

// TailZ is where Calibrate cuts the normal model of one-comparison
// impostor distances: 3.48 standard deviations leave 1 in 4,000 (one
// sided), so a household of 20 takes at most about 0.5% of stranger frames
// for somebody.
const TailZ = 3.48

// ErrCalibration: too little enrollment data (fewer than 3 people with 2
// samples each).
var ErrCalibration = errors.New("descriptor: calibration needs at least 3 people with 2 samples each")

// Calibrate fixes the decision constants from enrollment descriptors only
// (samples by person) and a cohort. Each sample of each person is probed
// against a gallery of every other person, and against each other person
// alone (a household of one: one comparison each). Then:
//
//   - Threshold models those one-comparison impostor distances as normal
//     and cuts its tail at TailZ standard deviations below the mean: where
//     it would accept one comparison in 4,000, which in a household of 20
//     is the 0.5% of stranger frames. The lowest impostor distance
//     seen is not used: it depends on how many people were tried (a
//     two-fold split of the enrollment people showed it letting 1-2% of
//     the other half's impostors through), and it let an ORL look-alike
//     through on the test images.
//   - Ratio and Cohort are the lowest d1/d2 and d1/c(P) over all the
//     impostor trials: no enrollment impostor passes either of them alone.
//
// Each is rounded down to two decimals. This is the rule that produced
// Shipped's Near and Far.
func Calibrate(samples map[string][]Vector, cohort []Vector) (Calibration, error) {
	return CalibrateWith(samples, nil, cohort)
}

// CalibrateWith is Calibrate with more impostor probes: probes[id] are
// descriptors of person id's enrollment images as the camera may also see
// them (relit by a strong side light, say), each probed against the same
// galleries without id as the samples are. They are impostor trials only:
// they tighten the constants where such images bring strangers closer,
// and change nothing else.
func CalibrateWith(samples, probes map[string][]Vector, cohort []Vector) (Calibration, error) {
	ids := make([]string, 0, len(samples))
	for id, s := range samples {
		if len(s) >= 2 {
			ids = append(ids, id)
		}
	}
	if len(ids) < 3 {
		return Calibration{}, ErrCalibration
	}
	sort.Strings(ids)
	var c Calibration
	var single []Match // the one-comparison impostor trials
	build := func(skipID string, skipSample int, only string) (*Gallery, error) {
		g, err := NewGallery(Rule{}, cohort)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			if (only != "" && id != only) || (id == skipID && skipSample < 0) {
				continue
			}
			s := samples[id]
			if id == skipID {
				s = slices.Delete(slices.Clone(s), skipSample, skipSample+1)
			}
			if err := g.Enroll(id, s, 0); err != nil {
				return nil, err
			}
		}
		return g, nil
	}
	for _, id := range ids {
		others, err := build(id, -1, "")
		if err != nil {
			return c, err
		}
		singles := map[string]*Gallery{}
		for _, o := range ids {
			if o != id {
				if singles[o], err = build("", 0, o); err != nil {
					return c, err
				}
			}
		}
		impostor := func(probe *Vector) {
			c.Impostor = append(c.Impostor, others.Match(probe))
			for _, o := range ids {
				if o != id {
					m := singles[o].Match(probe)
					c.Impostor = append(c.Impostor, m)
					single = append(single, m)
				}
			}
		}
		for k := range probes[id] {
			impostor(&probes[id][k])
		}
		for k := range samples[id] {
			probe := &samples[id][k]
			impostor(probe)
			loo, err := build(id, k, "")
			if err != nil {
				return c, err
			}
			c.Genuine = append(c.Genuine, loo.Match(probe))
			c.Person = append(c.Person, id)
		}
	}
	var sum, sum2, n float64
	for _, m := range single {
		sum += m.Distance
		sum2 += m.Distance * m.Distance
		n++
	}
	mean := sum / n
	sd := math.Sqrt(math.Max(0, sum2/n-mean*mean))
	lowest := func(f func(Match) float64) float64 {
		m := math.Inf(1)
		for _, t := range c.Impostor {
			m = math.Min(m, f(t))
		}
		return math.Floor(m*100) / 100
	}
	c.Params = Params{
		Threshold: math.Floor((mean-TailZ*sd)*100) / 100,
		Ratio:     lowest(func(m Match) float64 { return m.Distance / m.RunnerDistance }),
		Cohort:    lowest(func(m Match) float64 { return m.Distance / m.CohortDist }),
	}
	return c, nil
}

// GenuineAccepted counts the leave-one-out genuine trials accepted as the
// right person under p.
func (c Calibration) GenuineAccepted(p Params) (n int) {
	for i, m := range c.Genuine {
		if m.SubjectID == c.Person[i] && m.AcceptedWith(p) {
			n++
		}
	}
	return n
}

// Stricter is, constant by constant, the stricter of a and b: where
// constants calibrated on several ways of enrolling must hold for each
// (Rule.Far: samples from afar, or of a size not recorded).
func Stricter(a, b Params) Params {
	return Params{Threshold: math.Min(a.Threshold, b.Threshold), Ratio: math.Min(a.Ratio, b.Ratio), Cohort: math.Min(a.Cohort, b.Cohort)}
}
