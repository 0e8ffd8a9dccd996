package check

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgekv/edgekv/chaos/history"
)

func TestRunWritesEvidenceThatReloads(t *testing.T) {
	h := mk(
		put(0, "a", "v1", 0, 10, 1),
		put(1, "a", "v2", 20, 30, 2),
		get(2, "a", "v1", 1, 40, 50), // stale
		put(0, "b", "w1", 0, 10, 3),
		final(get(3, "a", "v2", 2, 100, 110)),
		final(get(3, "b", "w1", 3, 100, 110)),
	)
	out := t.TempDir()
	r, err := Run(h, Config{Timeout: 10 * time.Second, OutDir: out, Name: "stale-read"})
	if err != nil {
		t.Fatal(err)
	}
	if r.OK() || r.Linearizability.Verdict != Illegal || r.Durability.Verdict != Ok {
		t.Fatalf("want illegal linearizability and ok durability:\n%s", r.String())
	}
	if r.Dir == "" || !strings.HasPrefix(r.Dir, out) || !strings.Contains(r.String(), r.Dir) {
		t.Fatalf("evidence folder %q not under %q or not in the report", r.Dir, out)
	}
	html, err := os.ReadFile(filepath.Join(r.Dir, HTMLFile))
	if err != nil {
		t.Fatal(err)
	}
	// The visualization embeds the operations as described by the model.
	if !strings.Contains(string(html), "<html") || !strings.Contains(string(html), "c2 get") {
		t.Fatalf("HTML does not look like porcupine's visualization of this history (%d bytes)", len(html))
	}
	again, err := history.ReadFile(filepath.Join(r.Dir, HistoryFile))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(again) != fmt.Sprint(h) {
		t.Fatalf("reloaded history differs:\n%v\n%v", again, h)
	}
	r2, err := Run(again, Config{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if r2.Linearizability.Verdict != Illegal || r2.Dir != "" {
		t.Fatalf("re-check of the reloaded history: %s, dir %q", r2.Linearizability.Verdict, r2.Dir)
	}
	rep, err := os.ReadFile(filepath.Join(r.Dir, ReportFile))
	if err != nil || !strings.Contains(string(rep), "linearizability: illegal") {
		t.Fatalf("report file: %v %q", err, rep)
	}
}

func TestRunDurabilityViolationWritesHistory(t *testing.T) {
	h := mk(put(0, "a", "v1", 0, 1, 1), final(getAbsent(1, "a", 10, 11)))
	r, err := Run(h, Config{Timeout: 10 * time.Second, OutDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if r.Durability.Verdict != Illegal || r.Dir == "" {
		t.Fatalf("want a durability violation with evidence:\n%s", r.String())
	}
	if _, err := history.ReadFile(filepath.Join(r.Dir, HistoryFile)); err != nil {
		t.Fatal(err)
	}
}

func TestRunPassingHistoryWritesNothing(t *testing.T) {
	out := t.TempDir()
	h := mk(put(0, "a", "v1", 0, 1, 1), final(get(1, "a", "v1", 1, 10, 11)))
	r, err := Run(h, Config{OutDir: out})
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || r.Dir != "" {
		t.Fatalf("want ok and nothing written:\n%s", r.String())
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Fatalf("%d entries written for a passing history", len(entries))
	}
	if r.Summary.Ops != 2 || r.Summary.ByKind[history.Put][history.OK] != 1 || r.Summary.Partitions != 1 {
		t.Fatalf("summary: %+v", r.Summary)
	}
}

func TestRunRejectsInvalidHistory(t *testing.T) {
	h := mk(put(0, "a", "v1", 0, 1, 1), put(1, "a", "v1", 2, 3, 2))
	if _, err := Run(h, Config{}); err == nil {
		t.Fatal("duplicate written value accepted")
	}
}

// hardHistory is n concurrent unknown puts on one key, a read of a value
// none wrote and a delete: to call it illegal porcupine must try every subset of
// the puts, 2^n states.
func hardHistory(n int) history.History {
	ops := []history.Op{put(0, "a", "v0", 0, 1, 1)}
	for i := 0; i < n; i++ {
		ops = append(ops, putUnknown(i+1, "a", fmt.Sprintf("v%d", i+1), 2, 3))
	}
	// The later delete depends on which puts took effect, so none can be
	// left out (see model.Operations).
	ops = append(ops, get(0, "a", "ghost", 1, 10, 11), del(0, "a", 12, 13, 100), final(getAbsent(0, "a", 20, 21)))
	return mk(ops...)
}

func TestTimeoutAnswersUnknownWithinTheLimit(t *testing.T) {
	h := hardHistory(60)
	const limit = 300 * time.Millisecond
	start := time.Now()
	r, err := Run(h, Config{Timeout: limit, OutDir: t.TempDir()})
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if r.Linearizability.Verdict != Unknown || r.OK() {
		t.Fatalf("verdict %s, want unknown", r.Linearizability.Verdict)
	}
	// The limit plus scheduling slack on a loaded 2-core machine.
	if elapsed > limit+2*time.Second {
		t.Fatalf("took %v with a %v limit", elapsed, limit)
	}
	if r.Dir == "" {
		t.Fatal("an unfinished check must keep its history")
	}
	t.Logf("unknown after %v (limit %v)", elapsed, limit)
}
