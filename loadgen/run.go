package loadgen

import (
	"context"
	"fmt"
	"math"
	"sort"
	"sync"
	"syscall"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Run performs one benchmark: an optional preload, the warm-up, then the
// measured phase, and returns the measured phase's result. Cancelling ctx
// ends the run early; the result then covers what was measured so far.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p, err := newPlan(cfg)
	if err != nil {
		return nil, err
	}
	workers := make([]*worker, cfg.Concurrency)
	for i := range workers {
		workers[i] = newWorker(i, p)
	}
	defer func() {
		for _, w := range workers {
			w.conn.close()
		}
	}()

	connectAll(ctx, workers, cfg.Timeout)
	if cfg.Preload {
		pre := &phase{workload: WorkloadPut, keyOrder: KeysSequential, requests: cfg.KeySpace}
		s := runPhase(ctx, pre, workers)
		if bad := s.attempts - s.ok[opPut]; bad > 0 {
			return nil, fmt.Errorf("preload: %d of %d puts failed (%s)", bad, s.attempts, s.errorSummary())
		}
	}
	if cfg.Warmup > 0 && ctx.Err() == nil {
		warm := newMeasuredPhase(&cfg)
		warm.requests, warm.duration = 0, cfg.Warmup
		if warm.rate > 0 {
			warm.slots = slotsIn(warm.rate, 0, warm.duration)
		}
		runPhase(ctx, warm, workers)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("cancelled before measuring: %w", err)
	}

	measured := newMeasuredPhase(&cfg)
	cpuBefore, err := processCPU()
	if err != nil {
		return nil, err
	}
	s := runPhase(ctx, measured, workers)
	cpuAfter, err := processCPU()
	if err != nil {
		return nil, err
	}
	return newResult(&cfg, s, cpuAfter.sub(cpuBefore), ctx.Err() != nil)
}

// connectAll dials every worker's connection before anything is
// measured, so that connection setup never counts as request latency
// (only reconnections after a failure do). A failed dial is not an error
// here: the worker's requests will fail and be counted.
func connectAll(ctx context.Context, workers []*worker, timeout time.Duration) {
	stopInterrupt := context.AfterFunc(ctx, func() {
		for _, w := range workers {
			w.conn.interrupt()
		}
	})
	defer stopInterrupt()
	deadline := time.Now().Add(timeout)
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = w.conn.dial(deadline) // counted, if it keeps failing, by the requests that follow
		}()
	}
	wg.Wait()
}

func newMeasuredPhase(cfg *Config) *phase {
	ph := &phase{
		workload: cfg.Workload,
		keyOrder: cfg.KeyOrder,
		rate:     cfg.Rate,
		requests: cfg.Requests,
		duration: cfg.Duration,
	}
	if ph.rate > 0 {
		ph.slots = slotsIn(ph.rate, ph.requests, ph.duration)
		ph.periodNanos = 1e9 / ph.rate
	}
	return ph
}

// slotsIn counts the open-loop slots of a phase: due times i*period
// before duration, at most requests of them.
func slotsIn(rate float64, requests uint64, duration time.Duration) uint64 {
	slots := uint64(math.MaxUint64)
	if duration > 0 {
		slots = uint64(math.Ceil(duration.Seconds() * rate))
	}
	if requests > 0 {
		slots = min(slots, requests)
	}
	return slots
}

// runPhase runs every worker through ph and merges their stats.
func runPhase(ctx context.Context, ph *phase, workers []*worker) *merged {
	if ph.rate > 0 && ph.periodNanos == 0 {
		ph.periodNanos = 1e9 / ph.rate
	}
	ph.start = time.Now()
	// Unblock workers stuck on the network when the run is cancelled.
	stopInterrupt := context.AfterFunc(ctx, func() {
		for _, w := range workers {
			w.conn.interrupt()
		}
	})
	defer stopInterrupt()

	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx, ph, len(workers))
		}()
	}
	wg.Wait()

	m := newMerged()
	for _, w := range workers {
		m.add(w.stats)
	}
	return m
}

// merged is the sum of all workers' stats for one phase.
type merged struct {
	hist      [numOps]*hdr.Histogram
	ok        [numOps]uint64
	notFound  uint64
	statuses  map[int]uint64
	transport [numErrClasses]uint64
	firstErr  [numErrClasses]string

	attempts, scheduled, late, skipped uint64
	maxLag                             time.Duration
	lastDone                           time.Duration
}

func newMerged() *merged {
	m := &merged{statuses: map[int]uint64{}}
	for i := range m.hist {
		m.hist[i] = hdr.New(histLowestNanos, histHighestNanos, histDigits)
	}
	return m
}

func (m *merged) add(s *stats) {
	for op := range s.hist {
		if dropped := s.hist[op].MergeInto(m.hist[op]); dropped != 0 {
			panic(fmt.Sprintf("loadgen: merging histograms of one geometry dropped %d values", dropped))
		}
		m.ok[op] += s.ok[op]
	}
	m.notFound += s.notFound
	for status, n := range s.statuses {
		m.statuses[status] += n
	}
	for c, n := range s.transport {
		m.transport[c] += n
		if m.firstErr[c] == "" {
			m.firstErr[c] = s.firstErr[c]
		}
	}
	m.attempts += s.attempts
	m.scheduled += s.scheduled
	m.late += s.late
	m.skipped += s.skipped
	m.maxLag = max(m.maxLag, s.maxLag)
	m.lastDone = max(m.lastDone, s.lastDone)
}

func (m *merged) okTotal() uint64 {
	var n uint64
	for _, v := range m.ok {
		n += v
	}
	return n
}

// errorSummary names the failures briefly, for an error message.
func (m *merged) errorSummary() string {
	var parts []string
	for _, status := range sortedKeys(m.statuses) {
		if status != 200 {
			parts = append(parts, fmt.Sprintf("status %d: %d", status, m.statuses[status]))
		}
	}
	for c, n := range m.transport {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s: %d (%s)", errClass(c), n, m.firstErr[c]))
		}
	}
	if len(parts) == 0 {
		return "no errors"
	}
	return fmt.Sprint(parts)
}

func sortedKeys(m map[int]uint64) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	return keys
}

// cpuTime is the process's CPU time so far.
type cpuTime struct{ user, system time.Duration }

func (a cpuTime) sub(b cpuTime) cpuTime {
	return cpuTime{user: a.user - b.user, system: a.system - b.system}
}

// processCPU reads getrusage(RUSAGE_SELF): the whole process, so when the
// generator shares its process with a server (as in tests) both count.
func processCPU() (cpuTime, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return cpuTime{}, fmt.Errorf("getrusage: %w", err)
	}
	return cpuTime{
		user:   time.Duration(ru.Utime.Nano()),
		system: time.Duration(ru.Stime.Nano()),
	}, nil
}

func sortStrings(s []string) { sort.Strings(s) }
