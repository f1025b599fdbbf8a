package outbox

import (
	"context"
	"fmt"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// BenchmarkEnqueue1KiB measures durable enqueues (each one fsynced before
// Enqueue returns) of 1 KiB artifacts from many concurrent producers,
// which share commits.
func BenchmarkEnqueue1KiB(b *testing.B) {
	for _, par := range []int{1, 4, 16, 64} {
		b.Run(fmt.Sprintf("goroutines=%d", par*2), func(b *testing.B) { // GOMAXPROCS=2 on this machine
			e := newEnv(b)
			o := e.open(func(c *Config) { c.MaxQueueBytes = 1 << 40 })
			content := randBytes(1024)
			b.SetParallelism(par)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := o.Enqueue(context.Background(), Artifact{Kind: policy.KindUsage, Content: content}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "enqueues/s")
		})
	}
}

// BenchmarkPublishAcked measures artifacts published (manifest + chunks,
// QoS 1) through a real local Mosquitto and acked by a test cloud, up to
// the durable deletion after the ack.
func BenchmarkPublishAcked(b *testing.B) {
	for _, size := range []int{4 << 10, 256 << 10} {
		b.Run(fmt.Sprintf("size=%dKiB", size>>10), func(b *testing.B) {
			br := testbroker.Start(b)
			e := newEnv(b)
			var acked atomic.Int64
			done := make(chan struct{})
			o := e.open(func(c *Config) {
				c.MaxQueueBytes = 1 << 40
				c.ChunkSize = 64 << 10
				c.AckTimeout = time.Minute
				c.OnAcked = func(Meta) {
					if acked.Add(1) == int64(b.N) {
						close(done)
					}
				}
			})
			content := randBytes(size)
			var wg sync.WaitGroup
			for w := range 32 {
				wg.Go(func() {
					for i := w; i < b.N; i += 32 {
						if _, err := o.Enqueue(context.Background(), Artifact{Kind: policy.KindPhoto, Content: content}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			cl := newCloudWith(b, br, true)
			cl.autoAck(`{"ok":true}`)
			l, _ := startLink(b, br)
			b.ResetTimer()
			stop := runOutbox(b, o, l)
			select {
			case <-done:
			case <-time.After(5 * time.Minute):
				b.Fatalf("only %d of %d acked", acked.Load(), b.N)
			}
			b.StopTimer()
			stop()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "artifacts/s")
			b.ReportMetric(float64(b.N)*float64(size)/b.Elapsed().Seconds()/(1<<20), "MiB/s")
		})
	}
}
