package ops

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/edgekv/edgekv/batch"
	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/ebpf"
)

// scrape serves GET /metrics through MetricsHandler and parses the body
// strictly.
func scrape(t *testing.T, m *Metrics) (map[string]*family, string) {
	t.Helper()
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod(fasthttp.MethodGet)
	ctx.Request.SetRequestURI("/metrics")
	m.MetricsHandler(&ctx)
	if got := ctx.Response.StatusCode(); got != fasthttp.StatusOK {
		t.Fatalf("GET /metrics: status %d", got)
	}
	if ct := string(ctx.Response.Header.ContentType()); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("GET /metrics: content type %q", ct)
	}
	body := string(ctx.Response.Body())
	fams, err := parseExposition(body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, body)
	}
	return fams, body
}

// requiredFamilies are the families issue 8 asks for, with their type.
var requiredFamilies = map[string]string{
	famRequests: "counter", famRequestSeconds: "histogram", famInflight: "gauge",
	famProposals: "counter", famProposalsFailed: "counter",
	famCommitSeconds: "histogram", famFsyncSeconds: "histogram", famApplySeconds: "histogram",
	famTerm: "gauge", famCommitIndex: "gauge", famAppliedIndex: "gauge", famHasLeader: "gauge", famIsLeader: "gauge",
	famLeaderChanges: "counter", famElections: "counter", famPreVotes: "counter",
	famPeerLag: "gauge", famPeerInflight: "gauge", famPeerReachable: "gauge",
	famSnapshots: "counter", famSnapshotBytes: "histogram",
	famStoreBytes: "gauge", famQuotaBytes: "gauge", famStoreKeys: "gauge",
	// Issue 7: the batcher's distributions.
	famBatchEntries: "histogram", famBatchBytes: "histogram", famBatchOldestWait: "histogram", famBatchCommit: "histogram",
	"go_sync_mutex_wait_seconds_total": "counter", "go_sched_latencies_seconds": "histogram",
	"go_goroutines": "gauge", "go_memory_total_bytes": "gauge", "go_gc_cycles_total": "counter",
}

func TestExpositionHasEveryFamily(t *testing.T) {
	m := NewMetrics()
	fams, _ := scrape(t, m)
	for name, typ := range requiredFamilies {
		f, ok := fams[name]
		if !ok {
			t.Errorf("family %s missing", name)
			continue
		}
		if f.typ != typ {
			t.Errorf("family %s: TYPE %s, want %s", name, f.typ, typ)
		}
		if len(f.help) < 10 {
			t.Errorf("family %s: HELP %q too thin", name, f.help)
		}
	}
	// Every own family is required (ownFamilies and the list agree).
	for name := range ownFamilies {
		if _, ok := requiredFamilies[name]; !ok {
			t.Errorf("own family %s not in requiredFamilies", name)
		}
	}
	// The request table is pre-created: every endpoint x status series
	// exists at zero before any request.
	f := fams[famRequests]
	if want := int(numEndpoints) * int(numStatuses); len(f.samples) != want {
		t.Fatalf("%s: %d series, want %d", famRequests, len(f.samples), want)
	}
	if v, ok := f.value(famRequests, "endpoint", "kv_put", "code", "507"); !ok || v != 0 {
		t.Fatalf("kv_put/507 = %v, %v; want a zero series", v, ok)
	}

	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod(fasthttp.MethodPost)
	m.MetricsHandler(&ctx)
	if ctx.Response.StatusCode() != fasthttp.StatusMethodNotAllowed {
		t.Fatalf("POST /metrics: status %d, want 405", ctx.Response.StatusCode())
	}
}

// TestFamiliesMove records known amounts and checks each family moved by
// exactly that much between two scrapes.
func TestFamiliesMove(t *testing.T) {
	m := NewMetrics()
	before, _ := scrape(t, m)

	m.ObserveRequest(EndpointKVPut, 200, int64(3*time.Millisecond))
	m.ObserveRequest(EndpointKVPut, 200, int64(3*time.Millisecond))
	m.ObserveRequest(EndpointKVPut, 429, int64(200*time.Microsecond))
	m.ObserveRequest(EndpointKVGet, 418, int64(time.Millisecond)) // falls into 4xx
	m.AddProposals(5)
	m.AddProposalsFailed(1)
	m.ObserveCommit(int64(4 * time.Millisecond))
	m.ObserveFsync(int64(30 * time.Microsecond))
	m.ObserveFsync(int64(2 * time.Second))
	m.ObserveApply(int64(100 * time.Microsecond))
	m.SetRaftState(7, 100, 99, true, false)
	m.IncLeaderChanges()
	m.IncElections()
	m.IncPreVotes()
	m.IncPreVotes()
	m.ObserveSnapshot(SnapshotTaken, 1<<20)
	m.ObserveSnapshot(SnapshotSent, 100)
	m.SetStore(1500, 2<<30, 12)
	p := m.AddPeer("n2")
	p.SetLag(42)
	p.SetInflightBytes(4096)
	p.SetReachable(true)

	after, _ := scrape(t, m)
	delta := func(fam, name string, labels ...string) float64 {
		t.Helper()
		a, ok := after[fam].value(name, labels...)
		if !ok {
			t.Fatalf("%s%v missing after recording", name, labels)
		}
		b, _ := before[fam].value(name, labels...) // absent before: 0
		return a - b
	}
	checks := []struct {
		what      string
		got, want float64
	}{
		{"put 200", delta(famRequests, famRequests, "endpoint", "kv_put", "code", "200"), 2},
		{"put 429", delta(famRequests, famRequests, "endpoint", "kv_put", "code", "429"), 1},
		{"get 4xx", delta(famRequests, famRequests, "endpoint", "kv_get", "code", "4xx"), 1},
		{"get 404 untouched", delta(famRequests, famRequests, "endpoint", "kv_get", "code", "404"), 0},
		{"put 2xx latency count", delta(famRequestSeconds, famRequestSeconds+"_count", "endpoint", "kv_put", "class", "2xx"), 2},
		{"put 2xx le=2.5ms", delta(famRequestSeconds, famRequestSeconds+"_bucket", "endpoint", "kv_put", "class", "2xx", "le", "0.0025"), 0},
		{"put 2xx le=5ms", delta(famRequestSeconds, famRequestSeconds+"_bucket", "endpoint", "kv_put", "class", "2xx", "le", "0.005"), 2},
		{"put 2xx sum", delta(famRequestSeconds, famRequestSeconds+"_sum", "endpoint", "kv_put", "class", "2xx"), 0.006},
		{"put 4xx latency count", delta(famRequestSeconds, famRequestSeconds+"_count", "endpoint", "kv_put", "class", "4xx"), 1},
		{"proposals", delta(famProposals, famProposals), 5},
		{"proposals failed", delta(famProposalsFailed, famProposalsFailed), 1},
		{"commit count", delta(famCommitSeconds, famCommitSeconds+"_count"), 1},
		{"fsync count", delta(famFsyncSeconds, famFsyncSeconds+"_count"), 2},
		{"fsync le=50us", delta(famFsyncSeconds, famFsyncSeconds+"_bucket", "le", "5e-05"), 1},
		{"fsync le=1s", delta(famFsyncSeconds, famFsyncSeconds+"_bucket", "le", "1"), 1},
		{"fsync le=2.5s", delta(famFsyncSeconds, famFsyncSeconds+"_bucket", "le", "2.5"), 2},
		{"apply count", delta(famApplySeconds, famApplySeconds+"_count"), 1},
		{"term", delta(famTerm, famTerm), 7},
		{"commit index", delta(famCommitIndex, famCommitIndex), 100},
		{"applied index", delta(famAppliedIndex, famAppliedIndex), 99},
		{"has leader", delta(famHasLeader, famHasLeader), 1},
		{"is leader", delta(famIsLeader, famIsLeader), 0},
		{"leader changes", delta(famLeaderChanges, famLeaderChanges), 1},
		{"elections", delta(famElections, famElections), 1},
		{"pre-votes", delta(famPreVotes, famPreVotes), 2},
		{"snapshots taken", delta(famSnapshots, famSnapshots, "op", "taken"), 1},
		{"snapshots sent", delta(famSnapshots, famSnapshots, "op", "sent"), 1},
		{"snapshots received", delta(famSnapshots, famSnapshots, "op", "received"), 0},
		{"snapshot taken bytes", delta(famSnapshotBytes, famSnapshotBytes+"_sum", "op", "taken"), 1 << 20},
		{"snapshot sent le=64KiB", delta(famSnapshotBytes, famSnapshotBytes+"_bucket", "op", "sent", "le", "65536"), 1},
		{"store bytes", delta(famStoreBytes, famStoreBytes), 1500},
		{"quota", delta(famQuotaBytes, famQuotaBytes), 2 << 30},
		{"keys", delta(famStoreKeys, famStoreKeys), 12},
		{"peer lag", delta(famPeerLag, famPeerLag, "peer", "n2"), 42},
		{"peer inflight", delta(famPeerInflight, famPeerInflight, "peer", "n2"), 4096},
		{"peer reachable", delta(famPeerReachable, famPeerReachable, "peer", "n2"), 1},
	}
	for _, c := range checks {
		if diff := c.got - c.want; diff > 1e-9 || diff < -1e-9 {
			t.Errorf("%s: moved by %v, want %v", c.what, c.got, c.want)
		}
	}
}

func TestRuntimeFamiliesMove(t *testing.T) {
	m := NewMetrics()
	read := func() (mutexWait, schedCount float64) {
		fams, _ := scrape(t, m)
		mw, ok1 := fams["go_sync_mutex_wait_seconds_total"].value("go_sync_mutex_wait_seconds_total")
		sc, ok2 := fams["go_sched_latencies_seconds"].value("go_sched_latencies_seconds_count")
		if !ok1 || !ok2 {
			t.Fatal("runtime series missing")
		}
		return mw, sc
	}
	mw0, sc0 := read()
	// The runtime samples scheduler latency for about 1 goroutine in 8,
	// so start goroutines in rounds until the histogram grows (bounded by
	// a deadline, not a sleep).
	deadline := time.Now().Add(10 * time.Second)
	var mw1, sc1 float64
	for round := 0; ; round++ {
		done := make(chan struct{})
		for range 100 {
			go func() { done <- struct{}{} }()
		}
		for range 100 {
			<-done
		}
		mw1, sc1 = read()
		if sc1 > sc0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("go_sched_latencies_seconds_count stuck at %v after %d rounds of 100 goroutines", sc1, round+1)
		}
	}
	if mw1 < mw0 {
		t.Errorf("mutex wait went down: %v -> %v", mw0, mw1)
	}
}

func TestPeersComeAndGo(t *testing.T) {
	m := NewMetrics()
	a := m.AddPeer("n2")
	if m.AddPeer("n2") != a {
		t.Fatal("second AddPeer of n2 returned a new value")
	}
	m.AddPeer(`we"ird\name`).SetLag(3)
	fams, _ := scrape(t, m)
	if _, ok := fams[famPeerLag].value(famPeerLag, "peer", `we"ird\name`); !ok {
		t.Fatal("escaped peer label did not round-trip")
	}
	if !m.RemovePeer("n2") || m.RemovePeer("n2") {
		t.Fatal("RemovePeer: want true then false")
	}
	a.SetLag(9) // a stale holder keeps working, unexported
	fams, _ = scrape(t, m)
	if _, ok := fams[famPeerLag].value(famPeerLag, "peer", "n2"); ok {
		t.Fatal("removed peer still exported")
	}
	if len(fams[famPeerLag].samples) != 1 {
		t.Fatalf("want 1 peer series, got %d", len(fams[famPeerLag].samples))
	}
}

// TestExpositionWithBatcher puts a real batch.Batcher (and the registry
// and read queue the batch doc tells the runtime to register) on the
// same Set: every family must come out described, once, in one group,
// and no name may collide with ours.
func TestExpositionWithBatcher(t *testing.T) {
	t.Run("metadata off", func(t *testing.T) { testExpositionWithBatcher(t) })
	// VictoriaMetrics' global switch makes its writers emit empty HELP and
	// one HELP/TYPE pair per series: the exposition must stay valid.
	t.Run("metadata on", func(t *testing.T) {
		metrics.ExposeMetadata(true)
		defer metrics.ExposeMetadata(false)
		testExpositionWithBatcher(t)
	})
}

func testExpositionWithBatcher(t *testing.T) {
	m := NewMetrics()
	clock := &batch.FakeClock{}
	b, err := batch.New(batch.Config{Metrics: m.Set(), Observer: m, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	reg, err := batch.NewRegistry[int](16, 1)
	if err != nil {
		t.Fatal(err)
	}
	reg.RegisterMetrics(m.Set(), "edgekv_batch_waiters")
	reads, err := batch.NewReadQueue(16, batch.NewMonotonicClock())
	if err != nil {
		t.Fatal(err)
	}
	reads.RegisterMetrics(m.Set(), "edgekv_batch_reads")
	// The eBPF tracer needs root to attach; its scrape writer is the
	// Snapshot's exposition plus one counter, reproduced here with a
	// snapshot that saw one stage hit.
	m.Set().RegisterMetricsWriter(func(w io.Writer) {
		var s ebpf.Snapshot
		s.StageHits[0] = 1
		if err := s.WritePrometheus(w); err != nil {
			t.Error(err)
		}
		metrics.WriteMetadataIfNeeded(w, "edgekv_trace_read_errors_total", "counter")
		fmt.Fprintf(w, "edgekv_trace_read_errors_total %d\n", 0)
	})
	// One batch of two proposals that waited 5ms and 3ms, committed 4ms
	// after it left; then one proposal left queued.
	for range 2 {
		if r := b.Submit(batch.Proposal{Data: []byte("x")}); r != batch.ReasonNone {
			t.Fatalf("submit: %v", r)
		}
		clock.Advance(2 * time.Millisecond)
	}
	bt, ok := b.Next(clock.Advance(time.Millisecond))
	if !ok || len(bt.Proposals) != 2 {
		t.Fatalf("Next: %v, %d proposals", ok, len(bt.Proposals))
	}
	b.Finish(bt.ID, clock.Advance(4*time.Millisecond), true)
	if r := b.Submit(batch.Proposal{Data: []byte("x")}); r != batch.ReasonNone {
		t.Fatalf("submit: %v", r)
	}

	e := new(exposition)
	m.writeExposition(e)
	if len(e.report.undescribed) > 0 || len(e.report.split) > 0 {
		t.Fatalf("exposition repairs: undescribed %v, duplicated %v, split %v", e.report.undescribed, e.report.duplicated, e.report.split)
	}
	fams, err := parseExposition(e.out.String())
	if err != nil {
		t.Fatalf("%v\n%s", err, e.out.String())
	}
	if v, ok := fams["edgekv_batch_accepted_total"].value("edgekv_batch_accepted_total"); !ok || v != 3 {
		t.Fatalf("edgekv_batch_accepted_total = %v, %v; want 3", v, ok)
	}
	if v, ok := fams["edgekv_batch_pending_proposals"].value("edgekv_batch_pending_proposals"); !ok || v != 1 {
		t.Fatalf("edgekv_batch_pending_proposals = %v, %v; want 1", v, ok)
	}
	// The batcher's distributions are `le` histograms: the one batch is in
	// the right buckets and not in the one below.
	entrySize := int64(len("x")) + raftmsg.EntryOverheadBytes
	for _, c := range []struct {
		family, le string
		want       float64
	}{
		{famBatchEntries, "1", 0}, {famBatchEntries, "2", 1}, {famBatchEntries, "+Inf", 1},
		{famBatchBytes, "256", 1},
		{famBatchOldestWait, "0.002", 0}, {famBatchOldestWait, "0.005", 1},
		{famBatchCommit, "0.0025", 0}, {famBatchCommit, "0.005", 1},
	} {
		f := fams[c.family]
		if f == nil || f.typ != "histogram" {
			t.Fatalf("%s missing or not a histogram: %+v", c.family, f)
		}
		if v, ok := f.value(c.family+"_bucket", "le", c.le); !ok || v != c.want {
			t.Errorf("%s_bucket{le=%q} = %v, %v; want %v", c.family, c.le, v, ok, c.want)
		}
	}
	if v, _ := fams[famBatchBytes].value(famBatchBytes + "_sum"); v != float64(2*entrySize) {
		t.Errorf("%s_sum = %v, want %d", famBatchBytes, v, 2*entrySize)
	}
	if v, _ := fams[famBatchOldestWait].value(famBatchOldestWait + "_sum"); v != 0.005 {
		t.Errorf("%s_sum = %v, want 0.005 (the oldest wait only)", famBatchOldestWait, v)
	}
	for _, name := range []string{"edgekv_trace_stage_hits_total", "edgekv_trace_syscall_seconds", "edgekv_trace_runqueue_seconds", "edgekv_trace_read_errors_total"} {
		if fams[name] == nil {
			t.Errorf("eBPF family %s missing", name)
		}
	}
	if f := fams["edgekv_trace_syscall_seconds"]; f != nil && f.typ != "histogram" {
		t.Errorf("edgekv_trace_syscall_seconds has TYPE %s", f.typ)
	}
	for name := range fams {
		if strings.HasPrefix(name, "edgekv_batch_") || strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") {
			if _, own := ownFamilies[name]; own && !batchObserverFamilies[name] {
				t.Errorf("family %s is both ours and batch's/runtime's", name)
			}
		}
	}
	for name := range ownFamilies {
		if (strings.HasPrefix(name, "edgekv_batch_") && !batchObserverFamilies[name]) || strings.HasPrefix(name, "edgekv_trace_") {
			t.Errorf("own family %s uses a prefix another package owns", name)
		}
	}
	runPromtool(t, e.out.Bytes())
}

// batchObserverFamilies are the families ops writes for the batcher (as
// its batch.Observer): the only own families under batch's prefix.
var batchObserverFamilies = map[string]bool{
	famBatchEntries: true, famBatchBytes: true, famBatchOldestWait: true, famBatchCommit: true,
}

var _ batch.Observer = (*Metrics)(nil)

// TestNormalizeRepairs feeds normalize what VictoriaMetrics writers emit
// with and without its global ExposeMetadata switch.
func TestNormalizeRepairs(t *testing.T) {
	raw := strings.Join([]string{
		"# HELP foo_total",       // empty HELP, as VictoriaMetrics writes it
		"# TYPE foo_total gauge", // described otherwise: the description wins
		`foo_total{a="1"} 1`,
		"# HELP foo_total", // repeated per series by WriteCounterUint64
		"# TYPE foo_total counter",
		`foo_total{a="2"} 2`,
		"# HELP qux", // undescribed, empty HELP, repeated TYPE
		"# TYPE qux gauge",
		"# TYPE qux gauge",
		"qux 5",
		"# HELP quux Kept as given.",
		"# TYPE quux gauge",
		"quux 6",
		"bar 3",                // no metadata at all, described
		"baz_total 4",          // no metadata, undescribed
		"h_bucket{le=\"1\"} 1", // histogram without metadata, described
		"h_bucket{le=\"+Inf\"} 1",
		"h_count 1",
		"foo_total{a=\"3\"} 1", // foo_total again: split
		"",
	}, "\n")
	desc := map[string]familyDesc{
		"foo_total": {"counter", "Foo things."},
		"bar":       {"gauge", "Bar level."},
		"h":         {"histogram", "H latency."},
	}
	var out bytes.Buffer
	rep := normalize(&out, []byte(raw), func(f string) (familyDesc, bool) { d, ok := desc[f]; return d, ok })
	want := strings.Join([]string{
		"# HELP foo_total Foo things.",
		"# TYPE foo_total counter",
		`foo_total{a="1"} 1`,
		`foo_total{a="2"} 2`,
		"# HELP qux " + undescribedHelp,
		"# TYPE qux gauge",
		"qux 5",
		"# HELP quux Kept as given.",
		"# TYPE quux gauge",
		"quux 6",
		"# HELP bar Bar level.",
		"# TYPE bar gauge",
		"bar 3",
		"# HELP baz_total " + undescribedHelp,
		"# TYPE baz_total counter",
		"baz_total 4",
		"# HELP h H latency.",
		"# TYPE h histogram",
		`h_bucket{le="1"} 1`,
		`h_bucket{le="+Inf"} 1`,
		"h_count 1",
		`foo_total{a="3"} 1`,
		"",
	}, "\n")
	if out.String() != want {
		t.Fatalf("normalize output:\n%s\nwant:\n%s", out.String(), want)
	}
	if !slices.Equal(rep.undescribed, []string{"qux", "baz_total"}) || !slices.Equal(rep.duplicated, []string{"qux"}) || !slices.Equal(rep.split, []string{"foo_total"}) {
		t.Fatalf("report %+v", rep)
	}
}

func FuzzNormalize(f *testing.F) {
	f.Add([]byte("# HELP a\n# TYPE a counter\na 1\n"))
	f.Add([]byte("x{y=\"z\"} 1\n#\n# HELP\n\n{ 1\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var out bytes.Buffer
		normalize(&out, raw, func(string) (familyDesc, bool) { return familyDesc{}, false })
		// Each input line yields at most itself plus two metadata lines.
		if out.Len() > 3*len(raw)+3*(len(undescribedHelp)+64)*(bytes.Count(raw, []byte("\n"))+1) {
			t.Fatalf("output of %d bytes for %d bytes of input", out.Len(), len(raw))
		}
	})
}

func TestPromtoolOnFreshAndBusyNode(t *testing.T) {
	m := NewMetrics()
	m.AddPeer("n2").SetLag(1)
	m.ObserveRequest(EndpointBatch, 412, 1000)
	m.ObserveSnapshot(SnapshotReceived, 1<<30)
	var buf bytes.Buffer
	m.WritePrometheus(&buf)
	runPromtool(t, buf.Bytes())
}

// runPromtool runs `promtool check metrics` on an exposition. Without
// promtool on PATH it skips, unless REQUIRE_PROMTOOL=1 (CI).
func runPromtool(t *testing.T, exposition []byte) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("REQUIRE_PROMTOOL") == "1" {
			t.Fatalf("REQUIRE_PROMTOOL=1 but promtool is not on PATH: %v", err)
		}
		t.Skipf("promtool not on PATH (Debian: apt-get install prometheus); set REQUIRE_PROMTOOL=1 to make this fail: %v", err)
	}
	file := filepath.Join(t.TempDir(), "metrics.txt")
	if err := os.WriteFile(file, exposition, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "check", "metrics")
	in, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	cmd.Stdin = in
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	if len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("promtool check metrics reported problems:\n%s", out)
	}
}
