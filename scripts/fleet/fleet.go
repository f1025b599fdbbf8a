package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/core/policy"
)

// fleet is N robots in this process and the cloud that serves them.
type fleet struct {
	broker string // the robots' MQTT address
	dir    string
	prefix string
	s      settings
	clock  *simClock
	ledger *ledger
	log    *slog.Logger
	cloud  *cloud
	robots []*robot
	part   *robot // the robot in the network namespace, or nil

	mu      sync.Mutex
	running map[*robot]func() // stops a running robot and waits for it
}

type fleetOptions struct {
	dir, prefix             string
	n                       int
	broker, nsBroker, netns string // nsBroker and netns: the one robot dialing from a namespace
	cloudURL                string
	cloudClients            int
	s                       settings
	log                     *slog.Logger
}

func newFleet(o fleetOptions) (*fleet, error) {
	f := &fleet{broker: o.broker, dir: o.dir, prefix: o.prefix, s: o.s, clock: newSimClock(), ledger: newLedger(), log: o.log, running: map[*robot]func(){}}
	var ids []string
	for i := range o.n {
		id := fmt.Sprintf("%s%04d", o.prefix, i)
		r, err := openRobot(id, filepath.Join(o.dir, id), o.broker, tcpDial, o.s, f.clock, f.ledger, o.log)
		if err != nil {
			f.close()
			return nil, fmt.Errorf("robot %s: %w", id, err)
		}
		f.robots = append(f.robots, r)
		ids = append(ids, id)
	}
	if o.netns != "" {
		id := o.prefix + "ns"
		r, err := openRobot(id, filepath.Join(o.dir, id), o.nsBroker, netnsDialer(o.netns), o.s, f.clock, f.ledger, o.log)
		if err != nil {
			f.close()
			return nil, fmt.Errorf("robot %s: %w", id, err)
		}
		f.robots = append(f.robots, r)
		f.part = r
		ids = append(ids, id)
	}
	var err error
	if f.cloud, err = newCloud(o.cloudURL, o.cloudClients, ids, f.ledger); err != nil {
		f.close()
		return nil, err
	}
	return f, nil
}

// start runs robots (all when none are named).
func (f *fleet) start(robots ...*robot) {
	if len(robots) == 0 {
		robots = f.robots
	}
	for _, r := range robots {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { r.run(ctx); close(done) }()
		f.mu.Lock()
		f.running[r] = func() { cancel(); <-done }
		f.mu.Unlock()
	}
}

// stop stops robots (all when none are named): each publishes "offline"
// and disconnects, its session staying at the broker.
func (f *fleet) stop(robots ...*robot) {
	if len(robots) == 0 {
		robots = f.robots
	}
	var wg sync.WaitGroup
	for _, r := range robots {
		f.mu.Lock()
		stop := f.running[r]
		delete(f.running, r)
		f.mu.Unlock()
		if stop != nil {
			wg.Go(stop)
		}
	}
	wg.Wait()
}

func (f *fleet) close() {
	f.stop()
	if f.cloud != nil {
		f.cloud.close()
	}
	for _, r := range f.robots {
		r.close()
	}
}

func (f *fleet) ids(robots []*robot) map[string]bool {
	m := map[string]bool{}
	for _, r := range robots {
		m[r.id] = true
	}
	return m
}

// waitConnected waits until every robot named is connected.
func (f *fleet) waitConnected(robots []*robot, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		n := 0
		for _, r := range robots {
			if r.connected() {
				n++
			}
		}
		if n == len(robots) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d robots connected after %s", n, len(robots), d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// step is one thing a robot does at a simulated time of the day.
type step struct {
	at time.Duration // since midnight
	do func(ctx context.Context, r *robot) error
}

// schedule is one robot's busy day, the same for the same robot: the
// person it knows enrolled in the morning, 20 Patrol sightings, 30 photos
// admitted until the daily cap, reached at a time of its own between
// 16:00 and 21:00, which starts the selection (10 kept and uploaded, 20
// deleted). The cloud withdraws the person's consent at 15:00.
func schedule(id string) []step {
	seed := sha256.Sum256([]byte(id + "/day"))
	rng := rand.New(rand.NewPCG(binary.LittleEndian.Uint64(seed[:]), binary.LittleEndian.Uint64(seed[8:])))
	var s []step
	s = append(s, step{7*time.Hour + 30*time.Minute, func(_ context.Context, r *robot) error {
		subject, _ := r.person()
		r.notify(map[string]any{"type": "enrollment_completed", "subject_id": subject})
		return nil
	}})
	for i := range 20 {
		at := 8*time.Hour + time.Duration(i)*18*time.Minute + time.Duration(rng.IntN(600))*time.Second
		s = append(s, step{at, func(ctx context.Context, r *robot) error { return r.sighting(ctx) }})
	}
	capAt := 16*time.Hour + time.Duration(rng.IntN(5*3600))*time.Second
	for k := range 30 {
		at := 9*time.Hour + (capAt-9*time.Hour)*time.Duration(k+1)/30
		s = append(s, step{at, func(_ context.Context, r *robot) error {
			r.admit()
			if k == 29 {
				return r.selectPhotos()
			}
			return nil
		}})
	}
	sort.SliceStable(s, func(i, j int) bool { return s[i].at < s[j].at })
	return s
}

const withdrawAt = 15 * time.Hour

// playDay plays one simulated day, lasting d, on robots; the cloud sends
// each robot's person's withdrawal at 15:00. during, when set, runs
// alongside (the faults). It returns when the day is over and during has
// returned.
func (f *fleet) playDay(ctx context.Context, robots []*robot, d time.Duration, day int, during func(ctx context.Context) error) error {
	for _, r := range robots {
		if err := r.newDay(day); err != nil {
			return err
		}
	}
	midnight := f.clock.startDay(d)
	defer f.clock.endDay()
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(robots)+1)
	for _, r := range robots {
		wg.Go(func() {
			for _, st := range schedule(fmt.Sprintf("%s/%d", r.id, day)) {
				if !f.clock.sleepUntil(ctx, midnight.Add(st.at)) {
					return
				}
				if err := st.do(ctx, r); err != nil {
					errs <- fmt.Errorf("%s at %s: %w", r.id, st.at, err)
				}
			}
		})
		wg.Go(func() {
			if !f.clock.sleepUntil(ctx, midnight.Add(withdrawAt)) {
				return
			}
			id := fmt.Sprintf("revoke-%d-%s", day, r.id)
			// The cloud retries until the broker takes it (it may be
			// between nodes itself).
			for attempt := 0; ; attempt++ {
				subject, _ := r.person()
				err := f.cloud.command(r.id, id, "revoke_consent", map[string]any{"subject_id": subject})
				if err == nil {
					return
				}
				if attempt == 20 || ctx.Err() != nil {
					errs <- fmt.Errorf("withdrawal for %s: %w", r.id, err)
					return
				}
				time.Sleep(time.Second)
			}
		})
	}
	if during != nil {
		wg.Go(func() {
			if err := during(ctx); err != nil {
				errs <- err
			}
		})
	}
	f.clock.sleepUntil(ctx, midnight.Add(24*time.Hour))
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// drain waits until every robot named has nothing left to send (outbox and
// durable events), and the cloud has every withdrawal's result.
func (f *fleet) drain(robots []*robot, day int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		var left []string
		for _, r := range robots {
			n, _ := r.box.Summary()
			ev := r.ev.Pending()
			_, res := f.cloud.result(r.id, fmt.Sprintf("revoke-%d-%s", day, r.id))
			if n > 0 || ev > 0 || !res {
				left = append(left, fmt.Sprintf("%s: %d artifacts, %d events queued, withdrawal answered %v", r.id, n, ev, res))
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d robots not drained after %s, e.g. %s", len(left), d, left[0])
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// check verifies a day on robots: every artifact queued arrived whole or
// was erased unsent by the withdrawal, none corrupt, every withdrawal
// answered ok and its erase request delivered.
func (f *fleet) check(robots []*robot, day int) (outcome, error) {
	o := f.ledger.outcome(f.ids(robots))
	var errs []error
	if o.Missing > 0 || o.Corrupt > 0 {
		errs = append(errs, fmt.Errorf("%d artifacts missing, %d corrupt copies: %v", o.Missing, o.Corrupt, o.missing))
	}
	for _, r := range robots {
		if ok, seen := f.cloud.result(r.id, fmt.Sprintf("revoke-%d-%s", day, r.id)); !seen || !ok {
			errs = append(errs, fmt.Errorf("%s: withdrawal result seen %v ok %v", r.id, seen, ok))
		}
		if f.cloud.eventCount(r.id, "erase_request") < day {
			errs = append(errs, fmt.Errorf("%s: %d erase requests for %d withdrawals", r.id, f.cloud.eventCount(r.id, "erase_request"), day))
		}
	}
	if len(errs) > 5 {
		errs = append(errs[:5], fmt.Errorf("and %d more", len(errs)-5))
	}
	return o, errors.Join(errs...)
}

// photoProgress is the share of the photos queued so far that arrived.
func (f *fleet) photoProgress() (arrived, queued int) {
	return f.ledger.arrivedOf(policy.KindPhoto)
}

// meters sums the robots' meters.
func meters(robots []*robot) (map[string]tally, [2]int64) {
	sum := map[string]tally{}
	var wire [2]int64
	for _, r := range robots {
		for k, t := range r.meter.snapshot() {
			s := sum[k]
			s.Msgs += t.Msgs
			s.Bytes += t.Bytes
			sum[k] = s
		}
		wire[0] += r.meter.wire[0].Load()
		wire[1] += r.meter.wire[1].Load()
	}
	return sum, wire
}

func diffTallies(a, b map[string]tally) map[string]tally {
	out := map[string]tally{}
	for k, t := range b {
		d := tally{Msgs: t.Msgs - a[k].Msgs, Bytes: t.Bytes - a[k].Bytes}
		if d.Msgs != 0 || d.Bytes != 0 {
			out[k] = d
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
