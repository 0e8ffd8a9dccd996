package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgekv/edgekv/faultproxy"
	"github.com/edgekv/edgekv/loadgen"
)

// The rtt mode runs edgekv alone with a round-trip time added between its
// nodes, to check that pipelining and batching hide the latency (issue
// 10: with C clients, throughput at least 80% of C divided by the minimum
// commit latency).
//
// How the delay is placed. SPEC §1 gives a node one advertised peer
// address, and every node learns every other node's address from the same
// --initial-cluster, so a node cannot be told to dial a different address
// per peer: one proxy per directed pair cannot be expressed. Instead each
// node gets one proxy in front of its peer port (its --advertise-peer),
// delaying each direction by RTT/2. Every connection into node B then
// crosses B's proxy once: a request A→B and its answer B→A gain RTT/2
// each, so the round trip between every pair gains exactly RTT whichever
// node dialled and whichever connection carries the answer (A→B over
// A's connection, the answer over B's connection to A: RTT/2 + RTT/2
// again). Client traffic is not delayed.
//
// Minimum commit latency: a write sent to the leader needs one peer
// round trip (append to a follower, its acknowledgement); sent to a
// follower, it is forwarded to the leader and answered back over the peer
// connections: two. Loadgen's worker i talks to node i mod 3, so the
// ideal throughput is leaderClients/RTT + followerClients/(2*RTT).

// rttTargetFraction is issue 10's target: 80% of the ideal.
const rttTargetFraction = 0.8

type rttRow struct {
	Clients int `json:"clients"`
	// Leader is the leader's name when the row started ("" if unknown:
	// the ideal then assumes a third of the clients reach the leader).
	Leader        string   `json:"leader"`
	LeaderClients int      `json:"leader_clients"`
	IdealOpsSec   float64  `json:"ideal_ops_per_second"`
	TargetOpsSec  float64  `json:"target_ops_per_second"`
	Median        sample   `json:"median"`
	Samples       []sample `json:"samples"`
	Note          string   `json:"note,omitempty"`
	// ProxyLateUs is how late, on average, the delaying proxies wrote a
	// chunk after its due time during the row's repetitions: the
	// emulation's own error, which every round trip of the row carries
	// twice (faultproxy.Stats.Lateness).
	ProxyLateUs float64 `json:"proxy_late_us"`
}

// proxyLateness sums the delayed chunks and their lateness over proxies.
func proxyLateness(proxies []*faultproxy.Proxy) (chunks int64, late time.Duration) {
	for _, p := range proxies {
		st := p.Stats()
		for d := range st.DelayedChunks {
			chunks += st.DelayedChunks[d]
			late += st.Lateness[d]
		}
	}
	return chunks, late
}

// idealRTTThroughput is the throughput of clients that each wait one
// minimum commit latency per request.
func idealRTTThroughput(leaderClients, followerClients int, rtt time.Duration) float64 {
	return float64(leaderClients)/rtt.Seconds() + float64(followerClients)/(2*rtt.Seconds())
}

// clientsOnNode counts loadgen workers that talk to node index idx of n
// (worker i talks to endpoint i mod n).
func clientsOnNode(clients, idx, n int) int {
	c := clients / n
	if idx < clients%n {
		c++
	}
	return c
}

func runRTT(ctx context.Context, o *options, work string, log *slog.Logger) ([]rttRow, error) {
	s, err := startSession(ctx, o, sysEdgekv, o.EdgekvBin, filepath.Join(work, sysEdgekv), o.RTT/2, log)
	if err != nil {
		return nil, fmt.Errorf("edgekv with %v between nodes: %w", o.RTT, err)
	}
	defer func() {
		if err := s.cl.stop(); err != nil {
			log.Warn("stopping cluster", "err", err)
		}
	}()
	rows := make([]rttRow, 0, len(o.RTTClients))
	var errs []error
	for _, c := range o.RTTClients {
		row := rttRow{Clients: c}
		leader, err := clusterLeader(ctx, s.cl.nodes[0].clientAddr)
		idx := -1
		if err != nil {
			log.Warn("could not read the leader; the ideal assumes a third of the clients reach it", "err", err)
		}
		for i, n := range s.cl.nodes {
			if n.name == leader {
				idx = i
			}
		}
		if idx >= 0 {
			row.Leader, row.LeaderClients = leader, clientsOnNode(c, idx, len(s.cl.nodes))
		} else {
			row.LeaderClients = int(math.Round(float64(c) / float64(len(s.cl.nodes))))
		}
		row.IdealOpsSec = idealRTTThroughput(row.LeaderClients, c-row.LeaderClients, o.RTT)
		row.TargetOpsSec = rttTargetFraction * row.IdealOpsSec
		spec := rowSpec{ID: fmt.Sprintf("rtt-put-c%d", c), Workload: loadgen.WorkloadPut, Clients: c}
		chunks0, late0 := proxyLateness(s.cl.proxies)
		for range o.Repeat {
			if ctx.Err() != nil {
				break
			}
			smp, err := s.measure(ctx, spec, 0)
			if err != nil {
				row.Note = firstLine(err.Error())
				errs = append(errs, err)
				break
			}
			log.Info("measured", "row", spec.ID, "ok/s", fmt.Sprintf("%.0f", smp.OKPerSec), "p50_ms", smp.P50Us/1e3, "p99_ms", smp.P99Us/1e3)
			row.Samples = append(row.Samples, smp)
			row.Median = medianSample(row.Samples)
		}
		// Warm-ups included: the proxies cannot tell them apart.
		if chunks, late := proxyLateness(s.cl.proxies); chunks > chunks0 {
			row.ProxyLateUs = float64((late - late0).Microseconds()) / float64(chunks-chunks0)
		}
		rows = append(rows, row)
	}
	return rows, errors.Join(errs...)
}

// clusterLeader reads the leader's name from GET /v1/cluster (SPEC §2).
func clusterLeader(ctx context.Context, clientAddr string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+clientAddr+"/v1/cluster", nil)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Timeout: healthReqTimout}).Do(req)
	if err != nil {
		return "", fmt.Errorf("GET /v1/cluster: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /v1/cluster: status %d", resp.StatusCode)
	}
	var body struct {
		Leader string `json:"leader"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		return "", fmt.Errorf("GET /v1/cluster: %w", err)
	}
	return body.Leader, nil
}

func writeRTTTable(w io.Writer, rows []rttRow, repeats int, rtt time.Duration) error {
	var b strings.Builder
	fmt.Fprintf(&b, "edgekv alone, %v round trip added between every pair of nodes; medians of %d repetition%s\n", rtt, repeats, plural(repeats))
	fmt.Fprintf(&b, "ideal = leader clients/RTT + follower clients/(2 RTT); target = %.0f%% of ideal\n", rttTargetFraction*100)
	fmt.Fprintf(&b, "%8s %8s %10s %10s %10s %10s %10s %12s %6s\n", "clients", "leader", "ops/s", "p50 ms", "p99 ms", "ideal/s", "target/s", "cpu µs/op", "met")
	for _, r := range rows {
		met := "no"
		if len(r.Samples) == 0 {
			met = "-"
		} else if r.Median.OKPerSec >= r.TargetOpsSec {
			met = "yes"
		}
		leader := r.Leader
		if leader == "" {
			leader = "?"
		}
		ops, p50, p99, cpu := math.NaN(), math.NaN(), math.NaN(), math.NaN()
		if len(r.Samples) > 0 {
			ops, p50, p99, cpu = r.Median.OKPerSec, r.Median.P50Us/1e3, r.Median.P99Us/1e3, r.Median.ServerCPUUsPerOp
		}
		fmt.Fprintf(&b, "%8d %8s %10s %10s %10s %10s %10s %12s %6s\n", r.Clients, leader, formatFigure(ops), formatFigure(p50), formatFigure(p99),
			formatFigure(r.IdealOpsSec), formatFigure(r.TargetOpsSec), formatFigure(cpu), met)
		if r.Note != "" {
			fmt.Fprintf(&b, "note: %d clients: %s\n", r.Clients, r.Note)
		}
		if r.ProxyLateUs > 0 {
			fmt.Fprintf(&b, "note: %d clients: the delaying proxies wrote chunks %.0f µs after their due time on average (the emulation's error; a round trip carries it twice)\n", r.Clients, r.ProxyLateUs)
		}
		if r.Median.Errors > 0 {
			fmt.Fprintf(&b, "note: %d clients: %d failed requests over all repetitions (see the JSON)\n", r.Clients, r.Median.Errors)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
