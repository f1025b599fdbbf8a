package smile

import (
	"math"
	"math/rand"
	"sync"
)

// Sample is one labelled training crop.
type Sample struct {
	Crop  Crop
	Smile bool
}

// TrainConfig sets the optimiser. Zero fields take the defaults of
// DefaultTrainConfig.
type TrainConfig struct {
	Epochs      int
	Batch       int
	LearnRate   float64 // peak, cosine-decayed to zero
	Momentum    float64
	WeightDecay float64
	Seed        int64
	Workers     int // goroutines per batch
	// Augment: random mirror, rotation (radians), zoom and shift (pixels of
	// the input) applied to each sample each epoch.
	MaxAngle, MaxZoom, MaxShift float64
}

// DefaultTrainConfig is what scripts/quality/trainsmile uses.
var DefaultTrainConfig = TrainConfig{
	Epochs: 30, Batch: 32, LearnRate: 0.02, Momentum: 0.9, WeightDecay: 5e-4,
	Seed: 1, Workers: 2, MaxAngle: 0.17, MaxZoom: 0.1, MaxShift: 3,
}

func (c TrainConfig) withDefaults() TrainConfig {
	d := DefaultTrainConfig
	if c.Epochs == 0 {
		c.Epochs = d.Epochs
	}
	if c.Batch == 0 {
		c.Batch = d.Batch
	}
	if c.LearnRate == 0 {
		c.LearnRate = d.LearnRate
	}
	if c.Momentum == 0 {
		c.Momentum = d.Momentum
	}
	if c.WeightDecay == 0 {
		c.WeightDecay = d.WeightDecay
	}
	if c.Workers == 0 {
		c.Workers = d.Workers
	}
	return c
}

// Train fits a network to samples with SGD and momentum on the logistic
// loss. progress, when not nil, is called after each epoch with the mean
// training loss. The result depends only on the samples and the config.
func Train(samples []Sample, cfg TrainConfig, progress func(epoch int, loss float64)) *Net {
	cfg = cfg.withDefaults()
	rng := rand.New(rand.NewSource(cfg.Seed))
	net := NewNet(rng.NormFloat64)
	zero := func() float64 { return 0 }
	vel := NewNet(zero)
	type worker struct {
		grad *Net
		act  *activations
		in   []float32
	}
	workers := make([]*worker, cfg.Workers)
	for i := range workers {
		workers[i] = &worker{grad: NewNet(zero), act: newActivations(true), in: make([]float32, InputSize*InputSize)}
	}
	steps := cfg.Epochs * ((len(samples) + cfg.Batch - 1) / cfg.Batch)
	step := 0
	for epoch := 0; epoch < cfg.Epochs; epoch++ {
		order := rng.Perm(len(samples))
		// Draw every warp up front so the result does not depend on
		// goroutine scheduling.
		warps := make([]warp, len(samples))
		for i := range warps {
			warps[i] = randomWarp(rng, cfg)
		}
		var epochLoss float64
		for start := 0; start < len(order); start += cfg.Batch {
			batch := order[start:min(start+cfg.Batch, len(order))]
			losses := make([]float64, len(workers))
			var wg sync.WaitGroup
			for wi, w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for _, p := range w.grad.params() {
						clear(p)
					}
					for k := wi; k < len(batch); k += len(workers) {
						s := samples[batch[k]]
						sample(s.Crop, warps[batch[k]], w.in)
						losses[wi] += net.backward(w.in, s.Smile, w.act, w.grad)
					}
				}()
			}
			wg.Wait()
			for _, l := range losses {
				epochLoss += l
			}
			lr := cfg.LearnRate * 0.5 * (1 + math.Cos(math.Pi*float64(step)/float64(steps)))
			step++
			pp, vp := net.params(), vel.params()
			gps := make([][][]float32, len(workers))
			for wi, w := range workers {
				gps[wi] = w.grad.params()
			}
			for pi := range pp {
				decay := cfg.WeightDecay
				if pi%2 == 1 { // biases
					decay = 0
				}
				for j := range pp[pi] {
					g := 0.0
					for _, gp := range gps {
						g += float64(gp[pi][j])
					}
					g = g/float64(len(batch)) + decay*float64(pp[pi][j])
					v := cfg.Momentum*float64(vp[pi][j]) - lr*g
					vp[pi][j] = float32(v)
					pp[pi][j] += float32(v)
				}
			}
		}
		if progress != nil {
			progress(epoch, epochLoss/float64(len(samples)))
		}
	}
	return net
}

func randomWarp(rng *rand.Rand, cfg TrainConfig) warp {
	u := func() float64 { return 2*rng.Float64() - 1 }
	return warp{
		angle:  u() * cfg.MaxAngle,
		scale:  1 + u()*cfg.MaxZoom,
		dx:     u() * cfg.MaxShift,
		dy:     u() * cfg.MaxShift,
		mirror: rng.Intn(2) == 1,
	}
}

// backward runs one sample forward and adds the gradient of its logistic
// loss to grad. It returns the loss.
func (n *Net) backward(x []float32, smile bool, a *activations, grad *Net) float64 {
	logit := float64(n.forward(x, a))
	y := 0.0
	if smile {
		y = 1
	}
	p := 1 / (1 + math.Exp(-logit))
	loss := math.Log1p(math.Exp(-math.Abs(logit))) + math.Max(logit, 0) - y*logit
	d := float32(p - y)
	grad.fcB[0] += d
	last := len(n.conv) - 1
	dpool := make([]float32, len(a.fcIn))
	for j, v := range a.fcIn {
		grad.fcW[j] += d * v
		dpool[j] = d * n.fcW[j]
	}
	side := InputSize >> last
	for i := last; i >= 0; i-- {
		l := &n.conv[i]
		dpre := a.dpre[i]
		clear(dpre)
		for k, j := range a.arg[i] {
			dpre[j] += dpool[k]
		}
		for j, v := range a.pre[i] {
			if v <= 0 {
				dpre[j] = 0
			}
		}
		var dIn []float32
		if i > 0 {
			dIn = a.din[i]
		}
		conv3x3Backward(a.col[i], l.w, dpre, grad.conv[i].w, grad.conv[i].b, dIn, a.dcol, l.in, l.out, side)
		dpool = dIn
		side *= 2
	}
	return loss
}

// conv3x3Backward adds the gradients of conv3x3 with respect to its weights
// and biases, and (when din is not nil) writes the one of its input. col is
// the unrolled input of the forward pass; dcol is scratch of the same size.
func conv3x3Backward(col, w, dout, dw, db, din, dcol []float32, cin, cout, side int) {
	plane := side * side
	k := cin * 9
	for o := 0; o < cout; o++ {
		dp := dout[o*plane : (o+1)*plane]
		var sb float32
		for _, v := range dp {
			sb += v
		}
		db[o] += sb
		dwr := dw[o*k : (o+1)*k]
		for j := range dwr {
			c := col[j*plane : (j+1)*plane]
			c = c[:len(dp)]
			var acc float32
			for t, g := range dp {
				acc += g * c[t]
			}
			dwr[j] += acc
		}
	}
	if din == nil {
		return
	}
	clear(dcol[:k*plane])
	for o := 0; o < cout; o++ {
		dp := dout[o*plane : (o+1)*plane]
		wr := w[o*k : (o+1)*k]
		for j, wv := range wr {
			c := dcol[j*plane : (j+1)*plane]
			c = c[:len(dp)]
			for t, g := range dp {
				c[t] += wv * g
			}
		}
	}
	// col2im
	clear(din[:cin*plane])
	for i := 0; i < cin; i++ {
		ip := din[i*plane : (i+1)*plane]
		for ky := 0; ky < 3; ky++ {
			for kx := 0; kx < 3; kx++ {
				src := dcol[(i*9+ky*3+kx)*plane : (i*9+ky*3+kx+1)*plane]
				dy, dx := ky-1, kx-1
				for y := max(0, -dy); y < min(side, side-dy); y++ {
					for x := max(0, -dx); x < min(side, side-dx); x++ {
						ip[(y+dy)*side+x+dx] += src[y*side+x]
					}
				}
			}
		}
	}
}
