// Package nemesis injects faults into a chaos/cluster while the workload
// runs: network faults through the cluster's proxies (partitions, one-way
// cuts, an isolated leader, a bridge, latency with jitter, stalled and
// dropped connections) and process faults by PID (kill -9 of one node, a
// minority or all of them, SIGSTOP pauses longer than the election
// timeout), composed into named scenarios and applied on a seeded
// schedule: quiet, fault, heal, quiet, fault...
//
// It must never judge the cluster (chaos/check does), never leave a fault
// in force when Run returns (Run heals the network, resumes paused nodes
// and restarts killed ones), and never sleep without watching its context.
package nemesis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgekv/edgekv/chaos/cluster"
)

// Env is what a fault acts on.
type Env struct {
	Cluster *cluster.Cluster
	Rng     *rand.Rand // the schedule's seeded source
	Acks    *Acks      // nil when the workload does not report acks
}

// Acks lets a fault act the instant a client's write is acknowledged: the
// workload calls Acked after every 2xx to a write (workload.Config.OnAck).
type Acks struct {
	armed atomic.Pointer[func()]
}

// Acked runs the armed action, once, in the caller's goroutine.
func (a *Acks) Acked() {
	if f := a.armed.Swap(nil); f != nil {
		(*f)()
	}
}

func (a *Acks) arm(f func()) { a.armed.Store(&f) }

func (a *Acks) disarm() { a.armed.Store(nil) }

// Fault is one kind of misbehaviour: Start applies it and returns what it
// did (for the event log); Stop undoes it.
type Fault struct {
	Name string
	// Start applies the fault. rng is the schedule's seeded source.
	Start func(ctx context.Context, e *Env) (string, error)
	// Stop undoes it; nil means "heal the network".
	Stop func(ctx context.Context, c *cluster.Cluster) error
	// Hold overrides Schedule.Hold for this fault (pauses must outlast
	// the election timeout).
	Hold [2]time.Duration
}

// leaderOrRandom is the current leader if one is named, else a random
// running member.
func leaderOrRandom(ctx context.Context, c *cluster.Cluster, rng *rand.Rand) int {
	if l := c.Leader(ctx); l >= 0 {
		return l
	}
	return rng.IntN(c.Size())
}

// shuffled returns the member indexes in a random order.
func shuffled(c *cluster.Cluster, rng *rand.Rand) []int {
	p := rng.Perm(c.Size())
	return p
}

func names(c *cluster.Cluster, idx []int) string {
	s := make([]string, len(idx))
	for i, j := range idx {
		s[i] = c.Node(j).Name
	}
	return "{" + strings.Join(s, ",") + "}"
}

func healNet(_ context.Context, c *cluster.Cluster) error { c.Heal(); return nil }

// Network faults.
var (
	// PartitionHalves splits the members into a random minority and
	// majority.
	PartitionHalves = Fault{Name: "partition", Start: func(_ context.Context, e *Env) (string, error) {
		c, rng := e.Cluster, e.Rng
		p := shuffled(c, rng)
		k := 1 + rng.IntN(max(1, (c.Size()-1)/2))
		c.Partition(p[:k], p[k:])
		return fmt.Sprintf("partition %s | %s", names(c, p[:k]), names(c, p[k:])), nil
	}}
	// IsolateLeader cuts the leader from everyone, both ways.
	IsolateLeader = Fault{Name: "isolate-leader", Start: func(ctx context.Context, e *Env) (string, error) {
		c, rng := e.Cluster, e.Rng
		l := leaderOrRandom(ctx, c, rng)
		c.Isolate(l)
		return "isolate " + c.Node(l).Name, nil
	}}
	// OneWayFromLeader stops what the leader sends to every other member;
	// their messages still reach it (it keeps hearing votes and answers).
	OneWayFromLeader = Fault{Name: "one-way-leader-out", Start: func(ctx context.Context, e *Env) (string, error) {
		c, rng := e.Cluster, e.Rng
		l := leaderOrRandom(ctx, c, rng)
		for j := range c.Size() {
			if j != l {
				c.CutOneWay(l, j)
			}
		}
		return "cut everything " + c.Node(l).Name + " sends", nil
	}}
	// OneWayToLeader stops what every other member sends to the leader:
	// it keeps sending heartbeats but never hears acknowledgements.
	OneWayToLeader = Fault{Name: "one-way-leader-in", Start: func(ctx context.Context, e *Env) (string, error) {
		c, rng := e.Cluster, e.Rng
		l := leaderOrRandom(ctx, c, rng)
		for j := range c.Size() {
			if j != l {
				c.CutOneWay(j, l)
			}
		}
		return "cut everything sent to " + c.Node(l).Name, nil
	}}
	// OneWayRandom cuts a few random directed links.
	OneWayRandom = Fault{Name: "one-way-random", Start: func(_ context.Context, e *Env) (string, error) {
		c, rng := e.Cluster, e.Rng
		var cuts []string
		for range 1 + rng.IntN(c.Size()) {
			from, to := rng.IntN(c.Size()), rng.IntN(c.Size())
			if from == to {
				continue
			}
			c.CutOneWay(from, to)
			cuts = append(cuts, c.Node(from).Name+"->"+c.Node(to).Name)
		}
		return "cut " + strings.Join(cuts, " "), nil
	}}
	// Bridge: two sides that cannot talk, and one member that talks to
	// both (a random one, often not the leader).
	Bridge = Fault{Name: "bridge", Start: func(_ context.Context, e *Env) (string, error) {
		c, rng := e.Cluster, e.Rng
		b := rng.IntN(c.Size())
		c.Bridge(b)
		return "bridge through " + c.Node(b).Name, nil
	}}
	// Latency adds 5-50 ms to every link with up to as much jitter.
	Latency = Fault{Name: "latency", Start: func(_ context.Context, e *Env) (string, error) {
		c, rng := e.Cluster, e.Rng
		lat := time.Duration(5+rng.IntN(46)) * time.Millisecond
		jit := time.Duration(rng.Int64N(int64(lat)) + 1)
		c.SetLatency(lat, jit)
		return fmt.Sprintf("latency %v jitter %v", lat, jit.Round(time.Millisecond)), nil
	}}
	// StallLeader holds every byte to and from the leader, delivered late
	// when healed: stale messages arrive after a new term began.
	StallLeader = Fault{Name: "stall-leader", Start: func(ctx context.Context, e *Env) (string, error) {
		c, rng := e.Cluster, e.Rng
		l := leaderOrRandom(ctx, c, rng)
		c.Stall(l)
		return "stall " + c.Node(l).Name, nil
	}}
	// DropConnections cuts every peer connection a few times in a row.
	DropConnections = Fault{Name: "drop-connections", Start: func(ctx context.Context, e *Env) (string, error) {
		c, rng := e.Cluster, e.Rng
		n := 1 + rng.IntN(5)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for i := range n {
			if i > 0 {
				select {
				case <-ctx.Done():
					return "", ctx.Err()
				case <-t.C:
				}
			}
			c.DropConnections()
		}
		return fmt.Sprintf("drop every peer connection %d times", n), nil
	}}
)

// Process faults.
var (
	// KillOne kills -9 one random member; Stop restarts it.
	KillOne = Fault{Name: "kill-one", Start: func(_ context.Context, e *Env) (string, error) {
		c, rng := e.Cluster, e.Rng
		i := rng.IntN(c.Size())
		c.Node(i).Kill()
		return "kill -9 " + c.Node(i).Name, nil
	}, Stop: restartAll}
	// KillLeader kills -9 the leader; Stop restarts it.
	KillLeader = Fault{Name: "kill-leader", Start: func(ctx context.Context, e *Env) (string, error) {
		c, rng := e.Cluster, e.Rng
		l := leaderOrRandom(ctx, c, rng)
		c.Node(l).Kill()
		return "kill -9 leader " + c.Node(l).Name, nil
	}, Stop: restartAll}
	// KillMinority kills -9 a random minority at once; Stop restarts them.
	KillMinority = Fault{Name: "kill-minority", Start: func(_ context.Context, e *Env) (string, error) {
		c, rng := e.Cluster, e.Rng
		p := shuffled(c, rng)[:(c.Size()-1)/2]
		var wg sync.WaitGroup
		for _, i := range p {
			wg.Add(1)
			go func() { defer wg.Done(); c.Node(i).Kill() }()
		}
		wg.Wait()
		return "kill -9 " + names(c, p), nil
	}, Stop: restartAll}
	// KillAll kills -9 every member at once (power loss); Stop restarts
	// them together.
	KillAll = Fault{Name: "kill-all", Start: func(_ context.Context, e *Env) (string, error) {
		c := e.Cluster
		c.KillAll()
		return "kill -9 every member", nil
	}, Stop: restartAll, Hold: [2]time.Duration{200 * time.Millisecond, time.Second}}
	// KillAllOnAck kills -9 every member the instant a client's write is
	// acknowledged: a write acknowledged before it was durable on a
	// quorum has no time to become so, and is lost (the crashtest build
	// drops unsynced writes). Without acks it kills after a short wait.
	KillAllOnAck = Fault{Name: "kill-all-on-ack", Start: func(ctx context.Context, e *Env) (string, error) {
		c := e.Cluster
		if e.Acks == nil {
			c.KillAll()
			return "kill -9 every member (no ack hook)", nil
		}
		done := make(chan struct{})
		e.Acks.arm(func() { c.KillAll(); close(done) })
		t := time.NewTimer(5 * time.Second)
		defer t.Stop()
		select {
		case <-done:
			return "kill -9 every member on an acknowledgement", nil
		case <-ctx.Done():
		case <-t.C:
		}
		e.Acks.disarm()
		select {
		case <-done: // fired while disarming
			return "kill -9 every member on an acknowledgement", nil
		default:
		}
		c.KillAll()
		return "kill -9 every member (no write acknowledged in time)", nil
	}, Stop: restartAll, Hold: [2]time.Duration{200 * time.Millisecond, time.Second}}
	// PauseLeader stops the leader with SIGSTOP for longer than the
	// election timeout: when it resumes it must not serve lease reads or
	// acknowledge writes as if it still led.
	PauseLeader = Fault{Name: "pause-leader", Start: func(ctx context.Context, e *Env) (string, error) {
		c, rng := e.Cluster, e.Rng
		l := leaderOrRandom(ctx, c, rng)
		if err := c.Node(l).Pause(); err != nil {
			return "", err
		}
		return "SIGSTOP leader " + c.Node(l).Name, nil
	}, Stop: resumeAll, Hold: [2]time.Duration{1500 * time.Millisecond, 4 * time.Second}}
	// PauseThenIsolateLeader pauses the leader longer than the election
	// timeout, cuts it off, and resumes it while it is still cut off: it
	// wakes up believing it leads and cannot learn otherwise, so only its
	// own clock can tell it that its lease is gone (a frozen VM whose
	// network comes back late).
	PauseThenIsolateLeader = Fault{Name: "pause-isolate-leader", Start: func(ctx context.Context, e *Env) (string, error) {
		c, rng := e.Cluster, e.Rng
		l := leaderOrRandom(ctx, c, rng)
		if err := c.Node(l).Pause(); err != nil {
			return "", err
		}
		pause := time.Duration(1500+rng.IntN(1500)) * time.Millisecond
		wait(ctx, pause)
		c.Isolate(l)
		if err := c.Node(l).Resume(); err != nil {
			return "", err
		}
		return fmt.Sprintf("SIGSTOP leader %s for %v, then SIGCONT while it is isolated", c.Node(l).Name, pause), nil
	}, Stop: healNet, Hold: [2]time.Duration{500 * time.Millisecond, 1500 * time.Millisecond}}
	// PauseRandom stops a random member with SIGSTOP.
	PauseRandom = Fault{Name: "pause-random", Start: func(_ context.Context, e *Env) (string, error) {
		c, rng := e.Cluster, e.Rng
		i := rng.IntN(c.Size())
		if err := c.Node(i).Pause(); err != nil {
			return "", err
		}
		return "SIGSTOP " + c.Node(i).Name, nil
	}, Stop: resumeAll, Hold: [2]time.Duration{1500 * time.Millisecond, 4 * time.Second}}
)

// Compose applies several faults at once (started in order, undone in
// reverse order), for example latency while the leader is killed.
func Compose(faults ...Fault) Fault {
	names := make([]string, len(faults))
	var hold [2]time.Duration
	for i, f := range faults {
		names[i] = f.Name
		hold[0], hold[1] = max(hold[0], f.Hold[0]), max(hold[1], f.Hold[1])
	}
	return Fault{
		Name: strings.Join(names, "+"),
		Start: func(ctx context.Context, e *Env) (string, error) {
			var whats []string
			for _, f := range faults {
				what, err := f.Start(ctx, e)
				if err != nil {
					return strings.Join(whats, "; "), fmt.Errorf("%s: %w", f.Name, err)
				}
				whats = append(whats, what)
			}
			return strings.Join(whats, "; "), nil
		},
		Stop: func(ctx context.Context, c *cluster.Cluster) error {
			for i := len(faults) - 1; i >= 0; i-- {
				undo := faults[i].Stop
				if undo == nil {
					undo = healNet
				}
				if err := undo(ctx, c); err != nil {
					return fmt.Errorf("%s: %w", faults[i].Name, err)
				}
			}
			return nil
		},
		Hold: hold,
	}
}

// Membership and leadership changes while the load runs (SPEC §2
// /v1/cluster endpoints). A 404 means this build lacks the endpoint: the
// fault fails, never pretends it ran.
var (
	// TransferLeader moves leadership to a random other member, asking a
	// random member.
	TransferLeader = Fault{Name: "transfer-leader", Start: func(ctx context.Context, e *Env) (string, error) {
		c, rng := e.Cluster, e.Rng
		l := leaderOrRandom(ctx, c, rng)
		to := (l + 1 + rng.IntN(c.Size()-1)) % c.Size()
		via := rng.IntN(c.Size())
		status, body, err := c.TransferLeader(ctx, via, to)
		what := fmt.Sprintf("transfer leadership %s -> %s via %s: %d %s", c.Node(l).Name, c.Node(to).Name, c.Node(via).Name, status, short(body))
		if status == 404 {
			return what, errors.New("this build has no POST /v1/cluster/transfer-leader")
		}
		if err != nil {
			what += " (" + err.Error() + ")"
		}
		return what, nil
	}, Stop: func(context.Context, *cluster.Cluster) error { return nil }}
	// ReplaceMember removes a random follower (DELETE
	// /v1/cluster/members/<name>; the removed process exits), wipes its
	// data dir and starts it again with --join: it comes back as a new
	// learner that the leader promotes once caught up.
	ReplaceMember = Fault{Name: "replace-member", Start: func(ctx context.Context, e *Env) (string, error) {
		c, rng := e.Cluster, e.Rng
		l := leaderOrRandom(ctx, c, rng)
		v := (l + 1 + rng.IntN(c.Size()-1)) % c.Size()
		n := c.Node(v)
		if !n.Running() {
			return "replace " + n.Name + ": not running, skipped", nil
		}
		n.ExpectExit(true)
		// Once the removal is asked for, the replacement is finished even
		// if the faulty phase ends meanwhile: a removed member left
		// running, or wiped and not restarted, is a state no operator
		// would leave behind (found in CI: a replacement begun 5 ms before
		// the phase ended failed the run with "did not report serving:
		// context deadline exceeded").
		finish, cancel := context.WithTimeout(context.WithoutCancel(ctx), replaceTimeout)
		defer cancel()
		status, body, err := c.RemoveMember(finish, l, v)
		what := fmt.Sprintf("remove %s via %s: %d %s", n.Name, c.Node(l).Name, status, short(body))
		if err != nil {
			what += " (" + err.Error() + ")"
		}
		switch {
		case status == 404:
			n.ExpectExit(false)
			return what, errors.New("this build has no DELETE /v1/cluster/members/<name>")
		case err != nil || status == 504:
			// No answer, or "proposed but not applied in time; it may
			// still be": the outcome is unknown. Ask the other members.
			if !removalApplied(finish, c, v) {
				n.ExpectExit(false)
				return what + "; still a member, not replaced", nil
			}
			what += "; the other members no longer list it: removed"
		case status/100 != 2:
			n.ExpectExit(false)
			return what + "; not replaced", nil
		}
		if !n.AwaitExit(10 * time.Second) {
			what += "; did not exit within 10s, killed"
		}
		if err := c.Rejoin(finish, v, l); err != nil {
			return what, err
		}
		return what + "; wiped and rejoined with --join", nil
	}, Stop: restartAll}
)

// replaceTimeout bounds the end of a replacement (confirming an unknown
// removal, waiting for the exit, rejoining) once the removal was sent.
const replaceTimeout = 90 * time.Second

// removalConfirmTimeout bounds how long an unknown removal is waited for:
// a removal that was appended commits within a few election timeouts
// once the leader has a quorum, or is lost with its leader.
const removalConfirmTimeout = 10 * time.Second

// removalApplied reports whether the removal of member v whose outcome is
// unknown took effect: true once a running member other than v no longer
// lists it; false when they all still do at the end of
// removalConfirmTimeout (or none answers).
func removalApplied(ctx context.Context, c *cluster.Cluster, v int) bool {
	ctx, cancel := context.WithTimeout(ctx, removalConfirmTimeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, removed, _ := c.Membership(ctx, v); removed {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// short cuts an answer body for the event log.
func short(s string) string {
	const maxBytes = 120
	if len(s) <= maxBytes {
		return s
	}
	return s[:maxBytes] + "..."
}

func restartAll(ctx context.Context, c *cluster.Cluster) error { return c.RestartAll(ctx) }

func resumeAll(_ context.Context, c *cluster.Cluster) error {
	for _, n := range c.Nodes() {
		if err := n.Resume(); err != nil {
			return err
		}
	}
	return nil
}

// Scenario is a named set of faults applied one at a time.
type Scenario struct {
	Name   string
	Nodes  int // default cluster size
	Faults []Fault
}

// Scenarios lists every scenario by name.
var Scenarios = []Scenario{
	{Name: "partitions", Nodes: 3, Faults: []Fault{PartitionHalves, IsolateLeader, OneWayFromLeader, OneWayToLeader, OneWayRandom, Bridge}},
	{Name: "flaky-net", Nodes: 3, Faults: []Fault{Latency, StallLeader, DropConnections, IsolateLeader,
		Compose(Latency, IsolateLeader), Compose(Latency, KillLeader)}},
	// kill-all-on-ack twice: it is the fault that exposes acknowledged but
	// unsynced writes, and each one lands in that window only sometimes.
	{Name: "crashes", Nodes: 3, Faults: []Fault{KillOne, KillLeader, KillMinority, KillAll, KillAllOnAck, KillAllOnAck}},
	// pause-isolate-leader twice: a resumed leader that cannot hear the new
	// term is where a lease that outlives a pause shows.
	{Name: "pauses", Nodes: 3, Faults: []Fault{PauseLeader, PauseRandom, PauseThenIsolateLeader, PauseThenIsolateLeader, StallLeader}},
	{Name: "leader-pauses", Nodes: 3, Faults: []Fault{PauseLeader, PauseThenIsolateLeader}},
	{Name: "power-loss", Nodes: 3, Faults: []Fault{KillAllOnAck}},
	// Needs the membership endpoints (SPEC §2).
	{Name: "membership", Nodes: 3, Faults: []Fault{TransferLeader, ReplaceMember, KillOne, PartitionHalves,
		Compose(TransferLeader, Latency)}},
	{Name: "bridge-5", Nodes: 5, Faults: []Fault{Bridge, IsolateLeader, PartitionHalves, KillMinority}},
	{Name: "mixed", Nodes: 5, Faults: []Fault{PartitionHalves, IsolateLeader, OneWayFromLeader, OneWayToLeader, OneWayRandom, Bridge,
		Latency, StallLeader, DropConnections, KillOne, KillLeader, KillMinority, KillAll, KillAllOnAck, PauseLeader, PauseRandom, PauseThenIsolateLeader,
		Compose(Latency, PartitionHalves), Compose(OneWayRandom, KillOne), Compose(Bridge, PauseRandom)}},
}

// Lookup returns the scenario named name.
func Lookup(name string) (Scenario, bool) {
	for _, s := range Scenarios {
		if s.Name == name {
			return s, true
		}
	}
	return Scenario{}, false
}

// Schedule times the faults: Quiet between faults, Hold while one is in
// force, each drawn uniformly from its [min, max].
type Schedule struct {
	Quiet [2]time.Duration
	Hold  [2]time.Duration
}

// DefaultSchedule fits several faults into a 30-second scenario.
var DefaultSchedule = Schedule{
	Quiet: [2]time.Duration{500 * time.Millisecond, 1500 * time.Millisecond},
	Hold:  [2]time.Duration{time.Second, 3 * time.Second},
}

// Event is one entry of the nemesis log.
type Event struct {
	At    time.Duration // since Run started
	Fault string
	What  string
	Err   error
}

func (e Event) String() string {
	s := fmt.Sprintf("%8.3fs %-20s %s", e.At.Seconds(), e.Fault, e.What)
	if e.Err != nil {
		s += " (error: " + e.Err.Error() + ")"
	}
	return s
}

// Log is the nemesis' record of what it did.
type Log struct {
	Events []Event
	Counts map[string]int // faults applied, by name
}

func (l *Log) String() string {
	var b strings.Builder
	for _, e := range l.Events {
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func draw(rng *rand.Rand, r [2]time.Duration) time.Duration {
	if r[1] <= r[0] {
		return r[0]
	}
	return r[0] + time.Duration(rng.Int64N(int64(r[1]-r[0])))
}

// wait sleeps d unless ctx ends first; it reports whether d passed.
func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Run applies s's faults to c on sched, one at a time in a shuffled
// round-robin, until ctx ends,
// then undoes the last one. The returned error is a fault that could not
// be applied or undone (a runner problem, not a finding). stop is the
// context for undoing (it should outlive ctx).
func Run(ctx, stop context.Context, c *cluster.Cluster, acks *Acks, s Scenario, sched Schedule, seed uint64) (*Log, error) {
	rng := rand.New(rand.NewPCG(seed, 0x6e656d65736973))
	env := &Env{Cluster: c, Rng: rng, Acks: acks}
	log := &Log{Counts: map[string]int{}}
	start := time.Now()
	note := func(fault, what string, err error) {
		log.Events = append(log.Events, Event{At: time.Since(start), Fault: fault, What: what, Err: err})
	}
	// Faults are drawn from a shuffled bag, each once per round, so a short
	// run still applies every kind of its scenario.
	var bag []int
	for wait(ctx, draw(rng, sched.Quiet)) {
		if len(bag) == 0 {
			bag = rng.Perm(len(s.Faults))
		}
		f := s.Faults[bag[0]]
		bag = bag[1:]
		what, err := f.Start(ctx, env)
		note(f.Name, what, err)
		if err != nil {
			return log, fmt.Errorf("nemesis: %s: %w", f.Name, err)
		}
		log.Counts[f.Name]++
		hold := sched.Hold
		if f.Hold[1] > 0 {
			hold = f.Hold
		}
		wait(ctx, draw(rng, hold))
		undo := f.Stop
		if undo == nil {
			undo = healNet
		}
		err = undo(stop, c)
		note(f.Name, "heal", err)
		if err != nil {
			return log, fmt.Errorf("nemesis: undo %s: %w", f.Name, err)
		}
	}
	return log, nil
}
