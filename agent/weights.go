package agent

import "math"

// scoreWeights turns a breakdown into a score in [0, 1]: a weighted mean of
// the features it knows.
type scoreWeights map[string]float64

var defaultWeights = scoreWeights{"exposure": 1, "sharpness": 1}

func (w scoreWeights) score(b map[string]float64) float64 {
	var sum, total float64
	for k, v := range b {
		wk, ok := w[k]
		if !ok {
			continue
		}
		sum += wk * v
		total += math.Abs(wk)
	}
	if total == 0 {
		return 0
	}
	return math.Max(0, math.Min(1, sum/total))
}

func (d *Daemon) weights() scoreWeights { return defaultWeights }
