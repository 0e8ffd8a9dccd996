package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// metricsScrape is one /metrics exposition: every sample by its full series
// name (name{labels}), and which families have HELP and TYPE lines.
type metricsScrape struct {
	text     string
	samples  map[string]float64
	help     map[string]bool
	typeLine map[string]bool
}

func scrapeMetrics(t *testing.T, p *proc) metricsScrape {
	t.Helper()
	body := p.must(200, "GET", "/metrics", "").body
	s := metricsScrape{text: body, samples: map[string]float64{}, help: map[string]bool{}, typeLine: map[string]bool{}}
	for _, line := range strings.Split(body, "\n") {
		switch {
		case strings.HasPrefix(line, "# HELP "):
			s.help[strings.Fields(line)[2]] = true
		case strings.HasPrefix(line, "# TYPE "):
			s.typeLine[strings.Fields(line)[2]] = true
		case line == "" || strings.HasPrefix(line, "#"):
		default:
			i := strings.LastIndexByte(line, ' ')
			v, err := strconv.ParseFloat(line[i+1:], 64)
			if i < 0 || err != nil {
				t.Fatalf("unparsable sample %q", line)
			}
			s.samples[line[:i]] = v
		}
	}
	return s
}

// sum adds every series of a metric (name exactly, any labels) whose
// labels contain every one of want.
func (s metricsScrape) sum(name string, want ...string) (total float64, series int) {
	for k, v := range s.samples {
		if k != name && !strings.HasPrefix(k, name+"{") {
			continue
		}
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(k, w)
		}
		if ok {
			total += v
			series++
		}
	}
	return total, series
}

// TestMetricsFamiliesMoveUnderLoad: the families the operations issue
// names exist with HELP and TYPE, pass promtool, and move when a
// 3-member cluster takes writes, reads, a 404, snapshots and a leadership
// transfer.
func TestMetricsFamiliesMoveUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three processes")
	}
	c := startClusterExtra(t, 3, "--snapshot-entries", "20")
	oldLead := c.leader()
	target := c.follower()
	procs := []*proc{c.procs[oldLead], c.procs[target]}
	before := []metricsScrape{scrapeMetrics(t, procs[0]), scrapeMetrics(t, procs[1])}

	for i := 0; i < 60; i++ {
		c.procs[oldLead].must(200, "PUT", fmt.Sprintf("/v1/kv/m%d", i), strings.Repeat("v", 100))
		c.procs[target].must(200, "GET", fmt.Sprintf("/v1/kv/m%d", i), "")
	}
	c.procs[target].must(404, "GET", "/v1/kv/absent", "")
	// The leader's view of its peers (lag, in-flight bytes) is taken while
	// it still leads.
	leaderDuring := scrapeMetrics(t, procs[0])
	c.procs[oldLead].must(200, "POST", "/v1/cluster/transfer-leader", fmt.Sprintf(`{"to":%q}`, target))
	if got := c.leader(); got != target {
		t.Fatalf("leader after the transfer is %s, want %s", got, target)
	}
	for i := 0; i < 30; i++ {
		c.procs[target].must(200, "PUT", fmt.Sprintf("/v1/kv/n%d", i), "v")
	}
	after := []metricsScrape{scrapeMetrics(t, procs[0]), scrapeMetrics(t, procs[1])}

	// moved: the family's sum over both members grew; present: it has a
	// series with these labels (on the leader while it led).
	moved := []struct {
		what, name string
		labels     []string
	}{
		{"request rate per endpoint and status", "edgekv_http_requests_total", []string{`code="200"`}},
		{"requests answered 404", "edgekv_http_requests_total", []string{`code="404"`}},
		{"request latency per endpoint", "edgekv_http_request_duration_seconds_count", nil},
		{"proposals", "edgekv_raft_proposals_total", nil},
		{"commit latency", "edgekv_raft_commit_duration_seconds_count", nil},
		{"fsync latency", "edgekv_wal_fsync_duration_seconds_count", nil},
		{"apply latency", "edgekv_apply_duration_seconds_count", nil},
		{"term", "edgekv_raft_term", nil},
		{"leader changes", "edgekv_raft_leader_changes_total", nil},
		{"elections", "edgekv_raft_elections_total", nil},
		{"snapshots taken", "edgekv_snapshots_total", []string{`op="taken"`}},
		{"snapshot sizes", "edgekv_snapshot_size_bytes_count", nil},
		{"store size", "edgekv_store_size_bytes", nil},
		{"batches", "edgekv_batch_size_entries_count", nil},
		{"Go runtime: scheduler latency", "go_sched_latencies_seconds_count", nil},
	}
	for _, m := range moved {
		var b, a float64
		for i := range procs {
			vb, _ := before[i].sum(m.name, m.labels...)
			va, n := after[i].sum(m.name, m.labels...)
			if n == 0 {
				t.Errorf("%s: no series %s%v on %s", m.what, m.name, m.labels, []string{oldLead, target}[i])
			}
			b, a = b+vb, a+va
		}
		if a <= b {
			t.Errorf("%s: %s%v did not move (%v before, %v after)", m.what, m.name, m.labels, b, a)
		} else {
			t.Logf("%s: %s%v %v -> %v", m.what, m.name, m.labels, b, a)
		}
	}
	present := []struct {
		what, name string
		labels     []string
		min        float64
	}{
		{"replication lag per peer", "edgekv_replication_lag_entries", []string{`peer="`}, 0},
		{"in-flight bytes per peer", "edgekv_replication_inflight_bytes", []string{`peer="`}, 0},
		{"peer reachability", "edgekv_replication_peer_reachable", []string{`peer="`}, 1},
		{"pre-votes (the first election)", "edgekv_raft_pre_votes_total", nil, 0},
		{"quota", "edgekv_store_quota_bytes", nil, 1},
		// Exported, but need not move: the hot paths take no contended
		// mutex, so a quiet run may add no wait at all.
		{"Go runtime: mutex wait", "go_sync_mutex_wait_seconds_total", nil, 0},
	}
	for _, p := range present {
		v, n := leaderDuring.sum(p.name, p.labels...)
		if n == 0 || v < p.min {
			t.Errorf("%s: %s%v on the leader: %d series summing to %v, want at least %v", p.what, p.name, p.labels, n, v, p.min)
		} else {
			t.Logf("%s: %s%v %d series, sum %v", p.what, p.name, p.labels, n, v)
		}
	}
	// Pre-votes: every member started with a pre-vote round or answered
	// the winner's; the first election moved some member's counter.
	var preVotes float64
	for _, s := range append(before, after...) {
		v, _ := s.sum("edgekv_raft_pre_votes_total")
		preVotes += v
	}
	if preVotes == 0 {
		t.Error("edgekv_raft_pre_votes_total is 0 on both members: the first election's pre-vote was not counted")
	}
	for _, s := range after {
		for fam := range s.typeLine {
			if !s.help[fam] {
				t.Errorf("family %s has TYPE but no HELP", fam)
			}
		}
		for _, m := range moved {
			fam := strings.TrimSuffix(m.name, "_count")
			if !s.typeLine[fam] || !s.help[fam] {
				t.Errorf("family %s lacks HELP or TYPE", fam)
			}
		}
	}
	runPromtool(t, after[0].text)
	runPromtool(t, leaderDuring.text)
}
