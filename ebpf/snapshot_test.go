package ebpf

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/edgekv/edgekv/ebpf/stage"
)

func sampleSnapshot() *Snapshot {
	var s Snapshot
	for i := range s.StageHits {
		s.StageHits[i] = 3
	}
	for i := 0; i < 3; i++ {
		s.Stages[0][1].Add(20_000)
		s.Stages[1][2].Add(900_000)
		s.Batch.Add(1_000_000)
	}
	s.Syscalls[1].Add(800_000)
	s.RunQueue.Add(5_000)
	s.Unpaired[UnpairedOrphan] = 2
	return &s
}

func TestSyscallNames(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < NumSyscalls; i++ {
		n := SyscallName(i)
		if n == "" || n == "invalid" || seen[n] {
			t.Errorf("SyscallName(%d) = %q", i, n)
		}
		seen[n] = true
	}
	if SyscallName(NumSyscalls) != "invalid" || SyscallName(-1) != "invalid" {
		t.Error("out-of-range syscall index must be invalid")
	}
}

func TestSnapshotSub(t *testing.T) {
	prev := sampleSnapshot()
	cur := *prev
	cur.StageHits[2] += 5
	cur.Stages[1][2].Add(100)
	cur.Syscalls[1].Add(7)
	cur.Unpaired[UnpairedOutOfOrder]++
	d := cur.Sub(prev)
	if d.StageHits != [stage.NumStages]uint64{0, 0, 5, 0, 0, 0} {
		t.Errorf("hits delta %v", d.StageHits)
	}
	if d.Stages[1][2].Count() != 1 || d.Stages[0][1].Count() != 0 || d.Syscalls[1].Count() != 1 || d.Batch.Count() != 0 {
		t.Errorf("histogram deltas wrong: %d %d %d %d", d.Stages[1][2].Count(), d.Stages[0][1].Count(), d.Syscalls[1].Count(), d.Batch.Count())
	}
	if d.Unpaired != [NumUnpaired]uint64{0, 1, 0} {
		t.Errorf("unpaired delta %v", d.Unpaired)
	}
}

func TestSnapshotWriteText(t *testing.T) {
	var buf bytes.Buffer
	if err := sampleSnapshot().WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	order := []string{
		"marker hits: received 3 proposed 3 persisted 3 committed 3 applied 3 answered 3 unpaired-orphan 2\n",
		"stage received -> proposed: count 3,",
		"stage proposed -> persisted: count 3,",
		"batch received -> answered: count 3,",
		"syscall fdatasync: count 1,",
		"run queue: count 1,",
	}
	pos := 0
	for _, want := range order {
		i := strings.Index(out[pos:], want)
		if i < 0 {
			t.Fatalf("missing or out of order %q in:\n%s", want, out)
		}
		pos += i + len(want)
	}
	if strings.Contains(out, "syscall write") || strings.Contains(out, "persisted -> committed") {
		t.Errorf("empty histograms printed:\n%s", out)
	}
	buf.Reset()
	var empty Snapshot
	if err := empty.WriteText(&buf); err != nil || buf.String() != "no events\n" {
		t.Fatalf("empty snapshot printed %q, %v", buf.String(), err)
	}
}

var promLine = regexp.MustCompile(`^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? [0-9][0-9.e+-]*$`)

// checkPrometheusText checks every line is a comment or a well-formed
// sample, and returns the samples by series.
func checkPrometheusText(t *testing.T, text string) map[string]string {
	t.Helper()
	samples := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue
		}
		if !promLine.MatchString(line) {
			t.Errorf("malformed line %q", line)
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if _, dup := samples[line[:sp]]; dup {
			t.Errorf("duplicate series %q", line[:sp])
		}
		samples[line[:sp]] = line[sp+1:]
	}
	return samples
}

func TestSnapshotWritePrometheus(t *testing.T) {
	var buf bytes.Buffer
	if err := sampleSnapshot().WritePrometheus(&buf); err != nil {
		t.Fatal(err)
	}
	samples := checkPrometheusText(t, buf.String())
	for series, want := range map[string]string{
		`edgekv_trace_stage_seconds_count{from="received",to="proposed"}`:  "3",
		`edgekv_trace_stage_seconds_count{from="proposed",to="persisted"}`: "3",
		`edgekv_trace_batch_seconds_count`:                                 "3",
		`edgekv_trace_batch_seconds_sum`:                                   "0.003",
		`edgekv_trace_stage_hits_total{stage="answered"}`:                  "3",
		`edgekv_trace_unpaired_total{reason="orphan"}`:                     "2",
		`edgekv_trace_syscall_seconds_count{syscall="fdatasync"}`:          "1",
		`edgekv_trace_syscall_seconds_count{syscall="write"}`:              "0",
		`edgekv_trace_runqueue_seconds_count`:                              "1",
		`edgekv_trace_runqueue_seconds_bucket{le="8.192e-06"}`:             "1",
		`edgekv_trace_runqueue_seconds_bucket{le="4.096e-06"}`:             "0",
	} {
		if got, ok := samples[series]; !ok || got != want {
			t.Errorf("%s = %q (present %v), want %q", series, got, ok, want)
		}
	}
	if _, ok := samples[`edgekv_trace_stage_seconds_count{from="persisted",to="committed"}`]; ok {
		t.Error("an empty stage pair was exported")
	}
}
