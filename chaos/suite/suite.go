// Package suite runs one fault-testing scenario end to end against the
// real edgekv binary: it starts a cluster behind fault proxies
// (chaos/cluster), runs the clients (chaos/workload) while the nemesis
// (chaos/nemesis) injects faults, heals and restarts everything, reads
// every key once more, and judges the history (chaos/check):
// linearizability with porcupine under a time limit, and durability of
// every acknowledged write. On a violation, the evidence folder gets the
// history, porcupine's HTML visualization, the report, the nemesis log and
// every node's log.
//
// It must never call a run good that was not fully checked (a check that
// ran out of time is a failure with verdict "unknown"), and never leave a
// process running after Run returns.
package suite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/edgekv/edgekv/chaos/check"
	"github.com/edgekv/edgekv/chaos/cluster"
	"github.com/edgekv/edgekv/chaos/history"
	"github.com/edgekv/edgekv/chaos/nemesis"
	"github.com/edgekv/edgekv/chaos/workload"
	"github.com/edgekv/edgekv/faultproxy"
)

// Options describe one run.
type Options struct {
	Binary   string // edgekv built with -tags crashtest (cluster.Build)
	Dir      string // data dirs and node logs (a test's TempDir)
	Scenario nemesis.Scenario
	Nodes    int           // 0: the scenario's size
	Duration time.Duration // of the faulty phase
	Seed     uint64        // the nemesis schedule and the clients' choices
	Clients  int           // concurrent clients, spread over the nodes
	// Rate caps each client's requests per second (0: as fast as answers
	// come).
	Rate float64
	// Groups and KeysPerGroup shape the key space (defaults 4 and 3).
	Groups, KeysPerGroup int
	// CheckTimeout bounds the linearizability check (check.DefaultTimeout
	// if 0); past it the verdict is "unknown", a failure.
	CheckTimeout time.Duration
	// NodeFlags are added to every node's command line.
	NodeFlags []string
	// UnavailableWriteIsUnknown: see workload.Config.
	UnavailableWriteIsUnknown bool
	// OutDir receives an evidence folder when the run fails.
	OutDir   string
	Schedule nemesis.Schedule // zero: nemesis.DefaultSchedule
	// Logf, when set, receives progress lines.
	Logf func(format string, args ...any)
}

// Result is what a run found.
type Result struct {
	Report    check.Report
	Nemesis   *nemesis.Log
	Anomalies *workload.Anomalies
	Net       faultproxy.Stats
	// Exits are members that exited without the nemesis killing them (a
	// panic or fatal error of the product): a failure.
	Exits []string
	// Dir is the evidence folder ("" when the run passed).
	Dir string
}

// OK reports whether the run passed every check.
func (r *Result) OK() bool {
	return r.Report.OK() && r.Anomalies.Count() == 0 && len(r.Exits) == 0
}

// String is the run's report.
func (r *Result) String() string {
	var b strings.Builder
	if r.Report.Summary.Ops == 0 {
		b.WriteString("not checked: the run was aborted\n")
	} else {
		b.WriteString(r.Report.String())
	}
	fmt.Fprintf(&b, "faults: %v\n", r.Nemesis.Counts)
	fmt.Fprintf(&b, "network: %d connections accepted, %d refused, %d cut\n", r.Net.Accepted, r.Net.Refused, r.Net.Cut)
	for _, e := range r.Exits {
		fmt.Fprintf(&b, "crash: %s\n", e)
	}
	if n := r.Anomalies.Count(); n > 0 {
		fmt.Fprintf(&b, "contract: %s\n", r.Anomalies)
	}
	if r.Dir != "" {
		fmt.Fprintf(&b, "evidence folder: %s\n", r.Dir)
	}
	return b.String()
}

func (o *Options) defaults() {
	if o.Nodes == 0 {
		o.Nodes = o.Scenario.Nodes
	}
	if o.Clients == 0 {
		o.Clients = 8
	}
	if o.Groups == 0 {
		o.Groups = 4
	}
	if o.KeysPerGroup == 0 {
		o.KeysPerGroup = 3
	}
	if o.Schedule == (nemesis.Schedule{}) {
		o.Schedule = nemesis.DefaultSchedule
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
}

// Request timing: nodes answer a write they cannot commit with 504 after
// requestTimeout; clients give up a little later, so most unknown outcomes
// are 504s rather than silence (a paused or partitioned node still gives
// silence).
const (
	requestTimeout = 2 * time.Second
	clientTimeout  = 3 * time.Second
	readTimeout    = time.Second
	// healTimeout bounds healing: restarting, electing, catching up.
	healTimeout = 90 * time.Second
)

// Run runs one scenario. The error is for a run that could not be carried
// out (the cluster did not start, a fault could not be applied); a
// violation is reported in the Result.
func Run(ctx context.Context, o Options) (*Result, error) {
	o.defaults()
	if len(o.Scenario.Faults) == 0 {
		return nil, errors.New("suite: scenario without faults")
	}
	name := fmt.Sprintf("%s-n%d-seed%d", o.Scenario.Name, o.Nodes, o.Seed)
	c, err := cluster.Start(ctx, cluster.Config{
		Binary: o.Binary, Nodes: o.Nodes, Dir: o.Dir, Seed: o.Seed,
		Token: name, RequestTimeout: requestTimeout, ExtraFlags: o.NodeFlags,
	})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	o.Logf("%s: cluster up:\n%s", name, c)

	rec := history.NewRecorder(o.Clients+1, 1024)
	acks := &nemesis.Acks{}
	wl := workload.Config{
		Addrs: c.ClientAddrs(), Clients: o.Clients, Groups: o.Groups, KeysPerGroup: o.KeysPerGroup,
		Timeout: clientTimeout, ReadTimeout: readTimeout, Readers: min(o.Nodes, o.Clients/2),
		Seed: o.Seed, Rate: o.Rate,
		UnavailableWriteIsUnknown: o.UnavailableWriteIsUnknown,
		OnAck:                     acks.Acked,
	}
	faulty, stopFaults := context.WithTimeout(ctx, o.Duration)
	defer stopFaults()
	var anomalies *workload.Anomalies
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		anomalies = workload.Run(faulty, wl, rec)
	}()
	nlog, nerr := nemesis.Run(faulty, ctx, c, acks, o.Scenario, o.Schedule, o.Seed)
	stopFaults()
	wg.Wait()
	o.Logf("%s: nemesis:\n%s", name, nlog)
	// abort ends a run that could not be carried to its check (a fault
	// could not be undone, the cluster did not heal): often the product's
	// doing (a member that cannot restart), so the evidence is kept.
	abort := func(err error) (*Result, error) {
		res := &Result{Nemesis: nlog, Anomalies: anomalies, Net: c.NetStats(), Exits: c.UnexpectedExits()}
		if o.OutDir != "" {
			if werr := res.writeEvidence(o.OutDir, name, c); werr != nil {
				return res, errors.Join(err, werr)
			}
			h := rec.History()
			if werr := history.WriteFile(filepath.Join(res.Dir, check.HistoryFile), h); werr != nil {
				return res, errors.Join(err, werr)
			}
			err = fmt.Errorf("%w (evidence: %s)", err, res.Dir)
		}
		return res, err
	}
	if nerr != nil {
		return abort(nerr)
	}

	// Heal: network, paused and killed nodes; then every node must be
	// ready before the final reads.
	healCtx, cancel := context.WithTimeout(ctx, healTimeout)
	defer cancel()
	c.Heal()
	if err := c.RestartAll(healCtx); err != nil {
		return abort(fmt.Errorf("suite: heal: %w", err))
	}
	if err := c.WaitReady(healCtx); err != nil {
		return abort(fmt.Errorf("suite: heal: %w", err))
	}
	h := rec.History()
	finals, err := workload.FinalReads(healCtx, c.ClientAddrs(), workload.Keys(o.Groups, o.KeysPerGroup), clientTimeout, rec, o.Clients)
	if err != nil {
		return nil, fmt.Errorf("suite: %w", err)
	}
	h = workload.AppendFinal(h, finals)

	report, err := check.Run(h, check.Config{Timeout: o.CheckTimeout, OutDir: o.OutDir, Name: name})
	res := &Result{Report: report, Nemesis: nlog, Anomalies: anomalies, Net: c.NetStats(), Exits: c.UnexpectedExits(), Dir: report.Dir}
	if err != nil {
		return res, fmt.Errorf("suite: %w", err)
	}
	if !res.OK() && o.OutDir != "" {
		if err := res.writeEvidence(o.OutDir, name, c); err != nil {
			return res, err
		}
	}
	return res, nil
}

// writeEvidence adds the nemesis log, the run report and the node logs to
// the check's evidence folder (making one when only the contract check
// failed).
func (r *Result) writeEvidence(outDir, name string, c *cluster.Cluster) error {
	if r.Dir == "" {
		if err := os.MkdirAll(outDir, 0o755); err != nil {
			return fmt.Errorf("suite: evidence: %w", err)
		}
		dir, err := os.MkdirTemp(outDir, name+"-"+time.Now().UTC().Format("20060102T150405")+"-")
		if err != nil {
			return fmt.Errorf("suite: evidence: %w", err)
		}
		r.Dir = dir
	}
	files := map[string]string{"nemesis.log": r.Nemesis.String(), "run.txt": r.String()}
	for _, n := range c.Nodes() {
		b, err := os.ReadFile(n.LogPath)
		if err != nil {
			return fmt.Errorf("suite: evidence: %w", err)
		}
		files["node-"+n.Name+".log"] = string(b)
	}
	// A live node's state explains a stuck heal (a member that never
	// becomes ready) better than its log does.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, n := range c.Nodes() {
		if n.Running() && !n.Paused() {
			files["node-"+n.Name+".diag"] = c.Diagnostics(ctx, i)
		}
	}
	for f, content := range files {
		if err := os.WriteFile(filepath.Join(r.Dir, f), []byte(content), 0o644); err != nil {
			return fmt.Errorf("suite: evidence: %w", err)
		}
	}
	return nil
}
