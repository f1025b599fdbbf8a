package headnet

import (
	"math"
	"math/rand"
	"sync"
)

// Tile is one training input: a normalised grey W x H image (multiples of
// Stride) and, per output cell, what the net should say there.
type Tile struct {
	W, H int
	Pix  []float32
	// Per output cell (OutSize): Face 1 where a face's centre lies, 0
	// elsewhere; Weight 0 where the cell is not judged (a face beside the
	// size range, or a cell next to a face's); LogSize the log of the
	// face's size over RefFace where Face is 1.
	Face, Weight, LogSize []float32
}

// TrainConfig sets the optimiser: Adam, its step cosine-decayed to zero.
type TrainConfig struct {
	Epochs      int
	Batch       int
	LearnRate   float64 // peak step
	WeightDecay float64 // decoupled (AdamW), not on biases
	// PosWeight multiplies the loss of a face's cell: a tile has dozens of
	// cells without a face for each one with.
	PosWeight float64
	// SizeWeight multiplies the squared error of the log size.
	SizeWeight float64
	Seed       int64
	Workers    int
}

// DefaultTrainConfig is what scripts/quality/trainheads uses.
var DefaultTrainConfig = TrainConfig{
	Epochs: 16, Batch: 32, LearnRate: 2e-3, WeightDecay: 1e-4,
	PosWeight: 8, SizeWeight: 1, Seed: 1, Workers: 2,
}

// Train fits a net with Adam. tiles(epoch) gives the tiles of
// an epoch (drawn afresh each epoch, augmentation included); progress,
// when not nil, is called after each epoch with the mean loss per tile.
// The result depends only on the tiles and the config.
func Train(cfg TrainConfig, tiles func(epoch int) []Tile, progress func(epoch int, loss float64)) *Net {
	return TrainFrom(nil, cfg, tiles, progress)
}

// TrainFrom is Train starting from the weights of init (a copy; nil: a
// fresh net).
func TrainFrom(init *Net, cfg TrainConfig, tiles func(epoch int) []Tile, progress func(epoch int, loss float64)) *Net {
	rng := rand.New(rand.NewSource(cfg.Seed))
	net := NewNet(rng.NormFloat64)
	if init != nil {
		for i := range net.W {
			copy(net.W[i], init.W[i])
			copy(net.B[i], init.B[i])
		}
	}
	zero := func() float64 { return 0 }
	mom, sq := NewNet(zero), NewNet(zero)
	const beta1, beta2, eps = 0.9, 0.999, 1e-8
	type worker struct {
		grad *Net
		act  *acts
	}
	workers := make([]*worker, cfg.Workers)
	for i := range workers {
		workers[i] = &worker{grad: NewNet(zero)}
	}
	var steps, step int
	for epoch := 0; epoch < cfg.Epochs; epoch++ {
		ts := tiles(epoch)
		if steps == 0 {
			steps = cfg.Epochs * ((len(ts) + cfg.Batch - 1) / cfg.Batch)
		}
		order := rng.Perm(len(ts))
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
						t := &ts[batch[k]]
						if w.act == nil || w.act.w != t.W || w.act.h != t.H {
							w.act = newActs(t.W, t.H, true)
						}
						losses[wi] += net.backward(t, cfg, w.act, w.grad)
					}
				}()
			}
			wg.Wait()
			for _, l := range losses {
				epochLoss += l
			}
			lr := cfg.LearnRate * 0.5 * (1 + math.Cos(math.Pi*float64(step)/float64(steps)))
			step++
			c1, c2 := 1-math.Pow(beta1, float64(step)), 1-math.Pow(beta2, float64(step))
			pp, mp, sp := net.params(), mom.params(), sq.params()
			for pi := range pp {
				decay := cfg.WeightDecay
				if pi%2 == 1 { // biases
					decay = 0
				}
				for j := range pp[pi] {
					g := 0.0
					for _, w := range workers {
						g += float64(w.grad.params()[pi][j])
					}
					g /= float64(len(batch))
					m := beta1*float64(mp[pi][j]) + (1-beta1)*g
					v := beta2*float64(sp[pi][j]) + (1-beta2)*g*g
					mp[pi][j], sp[pi][j] = float32(m), float32(v)
					p := float64(pp[pi][j])
					p -= lr * ((m/c1)/(math.Sqrt(v/c2)+eps) + decay*p)
					pp[pi][j] = float32(p)
				}
			}
		}
		if progress != nil {
			progress(epoch, epochLoss/float64(len(ts)))
		}
	}
	return net
}

// backward runs one tile forward, adds the gradient of its loss to grad
// and returns the loss.
func (n *Net) backward(t *Tile, cfg TrainConfig, a *acts, grad *Net) float64 {
	out := n.forward(t.Pix, a)
	last := len(Arch) - 1
	cells := len(t.Face)
	d := a.dout[last]
	clear(d)
	var loss float64
	for c := 0; c < cells; c++ {
		w := float64(t.Weight[c])
		if w == 0 {
			continue
		}
		y := float64(t.Face[c])
		if y > 0 {
			w *= cfg.PosWeight
		}
		z := float64(out[c])
		p := 1 / (1 + math.Exp(-z))
		loss += w * (math.Log1p(math.Exp(-math.Abs(z))) + math.Max(z, 0) - y*z)
		d[c] = float32(w * (p - y))
		if y > 0 {
			e := float64(out[cells+c] - t.LogSize[c])
			loss += cfg.SizeWeight * e * e
			d[cells+c] = float32(2 * cfg.SizeWeight * e)
		}
	}
	for i := last; i >= 0; i-- {
		l := Arch[i]
		s := a.sizes[i]
		dpre := a.dout[i]
		if i < last {
			if l.Pool {
				clear(dpre)
				for k, j := range a.arg[i] {
					dpre[j] += a.din[i+1][k]
				}
			} else {
				copy(dpre, a.din[i+1])
			}
			for j, v := range a.out[i] {
				if v <= 0 {
					dpre[j] = 0
				}
			}
		}
		rows, plane := l.In*l.K*l.K, s[2]*s[3]
		convBackward(a.col[i], n.W[i], dpre, grad.W[i], grad.B[i], a.dcol, l.Out, rows, plane)
		if i > 0 {
			col2im(a.dcol, a.din[i], l.In, s[0], s[1], l.K, l.Stride, s[2], s[3])
		}
	}
	return loss
}

// convBackward adds the gradients of matmul with respect to w and b, and
// writes the one of col into dcol.
func convBackward(col, w, dout, dw, db, dcol []float32, cout, rows, plane int) {
	for o := 0; o < cout; o++ {
		dp := dout[o*plane : (o+1)*plane]
		var sb float32
		for _, v := range dp {
			sb += v
		}
		db[o] += sb
		dwr := dw[o*rows : (o+1)*rows]
		for r := range dwr {
			c := col[r*plane : (r+1)*plane][:len(dp)]
			var acc float32
			for t, g := range dp {
				acc += g * c[t]
			}
			dwr[r] += acc
		}
	}
	clear(dcol[:rows*plane])
	for o := 0; o < cout; o++ {
		dp := dout[o*plane : (o+1)*plane]
		wr := w[o*rows : (o+1)*rows]
		for r, wv := range wr {
			if wv == 0 {
				continue
			}
			c := dcol[r*plane : (r+1)*plane][:len(dp)]
			for t, g := range dp {
				c[t] += wv * g
			}
		}
	}
}
