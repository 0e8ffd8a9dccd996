package suite

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgekv/edgekv/chaos/check"
	"github.com/edgekv/edgekv/chaos/cluster"
	"github.com/edgekv/edgekv/chaos/history"
	"github.com/edgekv/edgekv/chaos/nemesis"
)

// Long mode, for example:
//
//	go test ./chaos/suite -run TestChaos -timeout 0 -v -args \
//	    -chaos.scenario=mixed -chaos.duration=10m -chaos.nodes=5 -chaos.seed=7
var (
	flagScenario = flag.String("chaos.scenario", "", "comma-separated scenarios to run, or \"all\" (default: the CI set)")
	flagDuration = flag.Duration("chaos.duration", 0, "faulty phase of each scenario (default: the CI durations)")
	flagSeed     = flag.Uint64("chaos.seed", 0, "seed of the fault schedule and the clients (default: from the clock, printed)")
	flagNodes    = flag.Int("chaos.nodes", 0, "cluster size (default: the scenario's)")
	flagClients  = flag.Int("chaos.clients", 0, "concurrent clients (default 8; as many readers as nodes, at most half)")
	flagRate     = flag.Float64("chaos.rate", -1, "requests per second per client, 0 for unlimited (default: 30 in the CI set, else unlimited)")
	flagOut      = flag.String("chaos.out", "", "folder for the evidence of failing runs (default: $TMPDIR/edgekv-chaos)")
	flag503      = flag.Bool("chaos.503unknown", false, "record a write's 503 as unknown rather than as refused (weaker, slower check)")
	flagSnap     = flag.Int("chaos.snapshot-entries", 200, "--snapshot-entries for every node when the binary has the flag (0: leave the default)")
	flagRecheck  = flag.String("chaos.recheck", "", "check again the history.jsonl of an evidence folder (TestRecheck)")
	flagCheck    = flag.Duration("chaos.checktimeout", 0, "time limit of the linearizability check (default 60s)")
)

// ciRuns is the short mode: five scenarios of 25 s of faults each,
// covering network, process and pause faults, a five-member cluster, and
// membership changes and leader transfers.
var ciRuns = []struct {
	scenario string
	duration time.Duration
}{
	{"partitions", 25 * time.Second},
	{"crashes", 25 * time.Second},
	{"pauses", 25 * time.Second},
	{"bridge-5", 25 * time.Second},
	{"membership", 25 * time.Second},
}

// ciRate caps each CI client: a loaded 2-core machine must keep CPU for
// the nodes, or every request times out and nothing is checked.
const ciRate = 30

var bin struct {
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if bin.dir != "" {
		os.RemoveAll(bin.dir)
	}
	os.Exit(code)
}

// binary builds the crashtest edgekv once per test binary.
func binary(t *testing.T) string {
	t.Helper()
	if bin.path == "" && bin.err == nil {
		bin.dir, bin.err = os.MkdirTemp("", "edgekv-chaos-bin-")
		if bin.err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			bin.path, bin.err = cluster.Build(ctx, "crashtest", bin.dir)
			cancel()
		}
	}
	if bin.err != nil {
		t.Fatal(bin.err)
	}
	return bin.path
}

type run struct {
	scenario nemesis.Scenario
	duration time.Duration
	rate     float64
}

// runs resolves the flags into the scenarios to run.
func runs(t *testing.T) []run {
	rate := *flagRate
	if *flagScenario == "" {
		if rate < 0 {
			rate = ciRate
		}
		var rs []run
		for _, r := range ciRuns {
			s, ok := nemesis.Lookup(r.scenario)
			if !ok {
				t.Fatalf("CI scenario %q unknown", r.scenario)
			}
			d := r.duration
			if *flagDuration > 0 {
				d = *flagDuration
			}
			rs = append(rs, run{s, d, rate})
		}
		return rs
	}
	if rate < 0 {
		rate = 0
	}
	d := *flagDuration
	if d == 0 {
		d = time.Minute
	}
	var rs []run
	if *flagScenario == "all" {
		for _, s := range nemesis.Scenarios {
			rs = append(rs, run{s, d, rate})
		}
		return rs
	}
	for _, name := range strings.Split(*flagScenario, ",") {
		s, ok := nemesis.Lookup(strings.TrimSpace(name))
		if !ok {
			var known []string
			for _, s := range nemesis.Scenarios {
				known = append(known, s.Name)
			}
			t.Fatalf("unknown scenario %q (known: %s)", name, strings.Join(known, ", "))
		}
		rs = append(rs, run{s, d, rate})
	}
	return rs
}

// TestChaos runs the real binary (crashtest build) through the scenarios
// and fails on any linearizability or durability violation, on a check
// that could not finish, and on answers outside the API contract.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real clusters under faults for minutes")
	}
	seed := *flagSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano()) % 1_000_000
	}
	out := *flagOut
	if out == "" {
		out = filepath.Join(os.TempDir(), "edgekv-chaos")
	}
	path := binary(t)
	var nodeFlags []string
	if *flagSnap > 0 {
		ok, err := cluster.SupportsFlag(context.Background(), path, "snapshot-entries")
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			nodeFlags = append(nodeFlags, "--snapshot-entries", strconv.Itoa(*flagSnap))
		} else {
			t.Logf("this build has no --snapshot-entries: snapshots are not exercised")
		}
	}
	for i, r := range runs(t) {
		t.Run(r.scenario.Name, func(t *testing.T) {
			o := Options{
				Binary: path, Dir: t.TempDir(), Scenario: r.scenario, Nodes: *flagNodes,
				Duration: r.duration, Seed: seed + uint64(i), Clients: *flagClients, Rate: r.rate,
				CheckTimeout: *flagCheck, OutDir: out, Logf: t.Logf,
				UnavailableWriteIsUnknown: *flag503, NodeFlags: nodeFlags,
			}
			start := time.Now()
			res, err := Run(context.Background(), o)
			if err != nil {
				if res != nil {
					t.Logf("%s", res)
				}
				t.Fatalf("scenario %s seed %d: %v", r.scenario.Name, o.Seed, err)
			}
			t.Logf("seed %d, %v:\n%s", o.Seed, time.Since(start).Round(time.Second), res)
			if !res.OK() {
				t.Errorf("scenario %s seed %d FAILED; evidence in %s\n%s", r.scenario.Name, o.Seed, res.Dir, res)
			}
		})
	}
}

// TestRecheck checks a saved history again (-chaos.recheck=<evidence
// folder or history.jsonl>), for example with a longer -chaos.checktimeout
// after an "unknown" verdict.
func TestRecheck(t *testing.T) {
	if *flagRecheck == "" {
		t.Skip("no -chaos.recheck given")
	}
	path := *flagRecheck
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, check.HistoryFile)
	}
	h, err := history.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := check.Run(h, check.Config{Timeout: *flagCheck})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s:\n%s", path, r.String())
	if !r.OK() {
		t.Errorf("%s does not pass", path)
	}
}
