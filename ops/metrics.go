package ops

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
)

// Metrics owns the node's *metrics.Set and every edgekv_* family this
// package defines. Create one per node with NewMetrics, hand Set() to the
// packages that register their own families (batch, ebpf), record through
// the methods below from any goroutine, and serve it with MetricsHandler.
//
// Every method that records is safe for concurrent use, allocation-free
// and lock-free; AddPeer/RemovePeer take a mutex (membership changes are
// rare) but recording on a *PeerMetrics does not.
type Metrics struct {
	set *metrics.Set

	// Request table: [endpoint][status] counters and [endpoint][class]
	// latency histograms, all created up front.
	requests       [numEndpoints][numStatuses]atomic.Uint64
	requestSeconds [numEndpoints][numClasses]*Histogram
	// requestPrefixes[e][s] is the formatted series name and labels of
	// requests[e][s], built once.
	requestPrefixes [numEndpoints][numStatuses]string
	inflight        atomic.Int64

	proposals       atomic.Uint64
	proposalsFailed atomic.Uint64
	commitSeconds   *Histogram
	fsyncSeconds    *Histogram
	applySeconds    *Histogram

	// The batcher's distributions (batch.Observer), one sample per batch.
	batchEntries    *Histogram
	batchBytes      *Histogram
	batchOldestWait *Histogram
	batchCommit     *Histogram

	term          atomic.Uint64
	commitIndex   atomic.Uint64
	appliedIndex  atomic.Uint64
	hasLeader     atomic.Uint64 // 0 or 1
	isLeader      atomic.Uint64 // 0 or 1
	leaderChanges atomic.Uint64
	elections     atomic.Uint64
	preVotes      atomic.Uint64

	snapshots        [numSnapshotOps]atomic.Uint64
	snapshotBytes    [numSnapshotOps]*Histogram
	snapshotPrefixes [numSnapshotOps]string

	storeBytes atomic.Uint64
	quotaBytes atomic.Uint64
	storeKeys  atomic.Uint64

	peersMu sync.Mutex
	peers   map[string]*PeerMetrics // guarded by peersMu

	describedMu sync.Mutex
	described   map[string]familyDesc // guarded by describedMu; foreign families

	// expositions pools scrape buffers (*exposition).
	expositions sync.Pool

	// scrapeMu serializes scrapes: the runtime sample buffer below is
	// reused across scrapes.
	scrapeMu sync.Mutex
	runtime  runtimeSampler // guarded by scrapeMu
}

// SnapshotOp says what happened to a snapshot.
type SnapshotOp uint8

// Snapshot operations, the `op` label of edgekv_snapshots_total and
// edgekv_snapshot_size_bytes.
const (
	SnapshotTaken    SnapshotOp = iota // this node wrote one (log compaction)
	SnapshotSent                       // the leader streamed one to a follower
	SnapshotReceived                   // this node installed one from the leader
	numSnapshotOps
)

var snapshotOpNames = [numSnapshotOps]string{"taken", "sent", "received"}

// PeerMetrics are one peer's replication gauges, returned by AddPeer. The
// replication loop keeps the pointer and records with atomic stores.
type PeerMetrics struct {
	name          string
	lagEntries    atomic.Uint64
	inflightBytes atomic.Uint64
	reachable     atomic.Uint64 // 0 or 1
}

// SetLag records how many entries the peer's match index is behind the
// leader's last index (0 when caught up).
func (p *PeerMetrics) SetLag(entries uint64) { p.lagEntries.Store(entries) }

// SetInflightBytes records the bytes sent to the peer and not yet
// acknowledged (bounded by --max-inflight-bytes).
func (p *PeerMetrics) SetInflightBytes(n uint64) { p.inflightBytes.Store(n) }

// SetReachable records whether the peer's connection is up.
func (p *PeerMetrics) SetReachable(up bool) { p.reachable.Store(b2u(up)) }

// NewMetrics returns a Metrics with its own Set and every family
// registered. Families other packages will write onto Set() can be given
// HELP text with Describe; those of batch and ebpf already are.
func NewMetrics() *Metrics {
	m := &Metrics{
		set:           metrics.NewSet(),
		commitSeconds: newHistogram(diskBoundsNanos, 1e-9),
		fsyncSeconds:  newHistogram(diskBoundsNanos, 1e-9),
		applySeconds:  newHistogram(diskBoundsNanos, 1e-9),

		batchEntries:    newHistogram(batchBoundsEntries, 1),
		batchBytes:      newHistogram(batchBoundsBytes, 1),
		batchOldestWait: newHistogram(batchWaitBoundsNanos, 1e-9),
		batchCommit:     newHistogram(diskBoundsNanos, 1e-9),
		peers:           make(map[string]*PeerMetrics),
		described:       make(map[string]familyDesc),
	}
	m.commitSeconds.bindSeries(famCommitSeconds, "")
	m.fsyncSeconds.bindSeries(famFsyncSeconds, "")
	m.applySeconds.bindSeries(famApplySeconds, "")
	m.batchEntries.bindSeries(famBatchEntries, "")
	m.batchBytes.bindSeries(famBatchBytes, "")
	m.batchOldestWait.bindSeries(famBatchOldestWait, "")
	m.batchCommit.bindSeries(famBatchCommit, "")
	for e := range numEndpoints {
		for s := range numStatuses {
			m.requestPrefixes[e][s] = famRequests + `{endpoint="` + e.String() + `",code="` + statusLabel(statusIndex(s)) + `"} `
		}
		for c := range numClasses {
			h := newHistogram(requestBoundsNanos, 1e-9)
			h.bindSeries(famRequestSeconds, `endpoint="`+e.String()+`",class="`+classNames[c]+`"`)
			m.requestSeconds[e][c] = h
		}
	}
	for op := range numSnapshotOps {
		m.snapshotPrefixes[op] = famSnapshots + `{op="` + snapshotOpNames[op] + `"} `
		h := newHistogram(snapshotBoundsBytes, 1)
		h.bindSeries(famSnapshotBytes, `op="`+snapshotOpNames[op]+`"`)
		m.snapshotBytes[op] = h
	}
	for name, d := range foreignFamilies {
		m.described[name] = d
	}
	m.runtime.init()
	m.set.RegisterMetricsWriter(m.writeOwn)
	return m
}

// Set returns the node's metric set: pass it to batch.Config.Metrics,
// ebpf's Tracer.RegisterMetrics and anything else that exports metrics.
func (m *Metrics) Set() *metrics.Set { return m.set }

// ObserveRequest records one finished request. The Middleware calls it;
// a handler that is not wrapped can call it directly.
func (m *Metrics) ObserveRequest(e Endpoint, status int, durationNanos int64) {
	if e >= numEndpoints {
		e = EndpointOther
	}
	m.requests[e][indexOfStatus(status)].Add(1)
	m.requestSeconds[e][classOfStatus(status)].ObserveNanos(durationNanos)
}

// AddProposals counts proposals handed to Raft (one per client write, not
// per batch).
func (m *Metrics) AddProposals(n uint64) { m.proposals.Add(n) }

// AddProposalsFailed counts proposals that did not commit (dropped, lost
// leadership, timed out).
func (m *Metrics) AddProposalsFailed(n uint64) { m.proposalsFailed.Add(n) }

// ObserveCommit records the time from proposing an entry to seeing it
// committed.
func (m *Metrics) ObserveCommit(nanos int64) { m.commitSeconds.ObserveNanos(nanos) }

// ObserveFsync records one WAL fsync.
func (m *Metrics) ObserveFsync(nanos int64) { m.fsyncSeconds.ObserveNanos(nanos) }

// ObserveApply records applying one batch of committed entries to the
// store.
func (m *Metrics) ObserveApply(nanos int64) { m.applySeconds.ObserveNanos(nanos) }

// ObserveBatch records one batch leaving the batcher: its size in
// proposals and bytes, and how long its oldest proposal waited there. It
// implements batch.Observer (pass the Metrics as batch.Config.Observer).
func (m *Metrics) ObserveBatch(entries int, sizeBytes, oldestWaitNanos int64) {
	m.batchEntries.Observe(uint64(max(entries, 0)))
	m.batchBytes.Observe(uint64(max(sizeBytes, 0)))
	m.batchOldestWait.ObserveNanos(oldestWaitNanos)
}

// ObserveBatchCommit records the time from a batch leaving the batcher to
// its last entry being applied (batch.Observer).
func (m *Metrics) ObserveBatchCommit(commitNanos int64) { m.batchCommit.ObserveNanos(commitNanos) }

// SetRaftState records the node's term, indexes and leadership after a
// Ready. A change of leader (including to or from "no leader") must be
// counted separately with IncLeaderChanges.
func (m *Metrics) SetRaftState(term, commitIndex, appliedIndex uint64, hasLeader, isLeader bool) {
	m.term.Store(term)
	m.commitIndex.Store(commitIndex)
	m.appliedIndex.Store(appliedIndex)
	m.hasLeader.Store(b2u(hasLeader))
	m.isLeader.Store(b2u(isLeader))
}

// IncLeaderChanges counts one change of the leader this node sees.
func (m *Metrics) IncLeaderChanges() { m.leaderChanges.Add(1) }

// IncElections counts one election this node started as candidate.
func (m *Metrics) IncElections() { m.elections.Add(1) }

// IncPreVotes counts one pre-vote round this node started (thesis §9.6).
func (m *Metrics) IncPreVotes() { m.preVotes.Add(1) }

// ObserveSnapshot counts one snapshot taken, sent or received, and its
// size in bytes (as written to disk or to the wire).
func (m *Metrics) ObserveSnapshot(op SnapshotOp, sizeBytes uint64) {
	if op >= numSnapshotOps {
		panic(fmt.Sprintf("ops: snapshot op %d out of range", op))
	}
	m.snapshots[op].Add(1)
	m.snapshotBytes[op].Observe(sizeBytes)
}

// SetStore records the store's size (what --quota-bytes is checked
// against), the quota itself and the number of keys.
func (m *Metrics) SetStore(sizeBytes, quotaBytes, keys uint64) {
	m.storeBytes.Store(sizeBytes)
	m.quotaBytes.Store(quotaBytes)
	m.storeKeys.Store(keys)
}

// AddPeer starts the per-peer series of name and returns them; a second
// AddPeer of the same name returns the same value. Call RemovePeer when
// the member leaves, so its series stop being exported.
func (m *Metrics) AddPeer(name string) *PeerMetrics {
	m.peersMu.Lock()
	defer m.peersMu.Unlock()
	if p, ok := m.peers[name]; ok {
		return p
	}
	p := &PeerMetrics{name: name}
	m.peers[name] = p
	return p
}

// RemovePeer stops exporting name's series; it reports whether name was
// there. A *PeerMetrics still held keeps working but is no longer written.
func (m *Metrics) RemovePeer(name string) bool {
	m.peersMu.Lock()
	defer m.peersMu.Unlock()
	_, ok := m.peers[name]
	delete(m.peers, name)
	return ok
}

// Describe gives HELP text and a TYPE to a family another package writes
// onto Set() without metadata (VictoriaMetrics writes none unless its
// global ExposeMetadata is on, and then with empty HELP). typ is counter,
// gauge, histogram, summary or untyped. The /metrics handler adds the
// lines before the family's first sample.
func (m *Metrics) Describe(family, typ, help string) error {
	if !validMetricName(family) {
		return fmt.Errorf("ops: describe %q: not a valid metric name", family)
	}
	switch typ {
	case "counter", "gauge", "histogram", "summary", "untyped":
	default:
		return fmt.Errorf("ops: describe %q: unknown type %q", family, typ)
	}
	if strings.TrimSpace(help) == "" {
		return fmt.Errorf("ops: describe %q: empty help", family)
	}
	if _, own := ownFamilies[family]; own {
		return fmt.Errorf("ops: describe %q: family belongs to ops.Metrics", family)
	}
	m.describedMu.Lock()
	defer m.describedMu.Unlock()
	m.described[family] = familyDesc{typ: typ, help: help}
	return nil
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// familyDesc is a family's TYPE and HELP.
type familyDesc struct {
	typ, help string
}

// Family names of ops.Metrics, with TYPE and HELP. writeOwn writes them in
// this order; the test checks every one is exposed.
const (
	famRequests        = "edgekv_http_requests_total"
	famRequestSeconds  = "edgekv_http_request_duration_seconds"
	famInflight        = "edgekv_http_requests_in_flight"
	famProposals       = "edgekv_raft_proposals_total"
	famProposalsFailed = "edgekv_raft_proposals_failed_total"
	famCommitSeconds   = "edgekv_raft_commit_duration_seconds"
	famFsyncSeconds    = "edgekv_wal_fsync_duration_seconds"
	famApplySeconds    = "edgekv_apply_duration_seconds"
	famBatchEntries    = "edgekv_batch_size_entries"
	famBatchBytes      = "edgekv_batch_size_bytes"
	famBatchOldestWait = "edgekv_batch_oldest_wait_seconds"
	famBatchCommit     = "edgekv_batch_commit_seconds"
	famTerm            = "edgekv_raft_term"
	famCommitIndex     = "edgekv_raft_commit_index"
	famAppliedIndex    = "edgekv_raft_applied_index"
	famHasLeader       = "edgekv_raft_has_leader"
	famIsLeader        = "edgekv_raft_is_leader"
	famLeaderChanges   = "edgekv_raft_leader_changes_total"
	famElections       = "edgekv_raft_elections_total"
	famPreVotes        = "edgekv_raft_pre_votes_total"
	famPeerLag         = "edgekv_replication_lag_entries"
	famPeerInflight    = "edgekv_replication_inflight_bytes"
	famPeerReachable   = "edgekv_replication_peer_reachable"
	famSnapshots       = "edgekv_snapshots_total"
	famSnapshotBytes   = "edgekv_snapshot_size_bytes"
	famStoreBytes      = "edgekv_store_size_bytes"
	famQuotaBytes      = "edgekv_store_quota_bytes"
	famStoreKeys       = "edgekv_store_keys"
)

var ownFamilies = map[string]familyDesc{
	famRequests:        {"counter", "HTTP requests served, by endpoint and status code."},
	famRequestSeconds:  {"histogram", "HTTP request latency from handler entry to response ready, by endpoint and status class."},
	famInflight:        {"gauge", "HTTP requests being handled now."},
	famProposals:       {"counter", "Client writes proposed to Raft (one per write, not per batch)."},
	famProposalsFailed: {"counter", "Proposals that did not commit: dropped, leadership lost or timed out."},
	famCommitSeconds:   {"histogram", "Time from proposing an entry to seeing it committed by a quorum."},
	famFsyncSeconds:    {"histogram", "Duration of one write-ahead log fsync."},
	famApplySeconds:    {"histogram", "Duration of applying one batch of committed entries to the store."},
	famBatchEntries:    {"histogram", "Proposals per batch cut by the adaptive batcher."},
	famBatchBytes:      {"histogram", "Bytes per batch cut by the adaptive batcher (bounded by --max-batch-bytes, one larger proposal aside)."},
	famBatchOldestWait: {"histogram", "How long the oldest proposal of each batch waited in the batcher (bounded by --max-batch-delay while the pipeline has room)."},
	famBatchCommit:     {"histogram", "Time from a batch leaving the batcher to its last entry applied: the latency the batcher holds batches for."},
	famTerm:            {"gauge", "Current Raft term of this node."},
	famCommitIndex:     {"gauge", "Highest log index this node knows to be committed."},
	famAppliedIndex:    {"gauge", "Highest log index applied to this node's store."},
	famHasLeader:       {"gauge", "1 if this node knows a leader, else 0."},
	famIsLeader:        {"gauge", "1 if this node is the leader, else 0."},
	famLeaderChanges:   {"counter", "Changes of the leader seen by this node, including to and from no leader."},
	famElections:       {"counter", "Elections this node started as a candidate."},
	famPreVotes:        {"counter", "Pre-vote rounds this node started (Raft thesis section 9.6)."},
	famPeerLag:         {"gauge", "Entries the peer's match index is behind the leader's last index (exported by the leader)."},
	famPeerInflight:    {"gauge", "Bytes sent to the peer and not yet acknowledged (bounded by --max-inflight-bytes)."},
	famPeerReachable:   {"gauge", "1 if the connection to the peer is up, else 0."},
	famSnapshots:       {"counter", "Snapshots taken (log compaction), sent to followers or received from the leader."},
	famSnapshotBytes:   {"histogram", "Size of snapshots taken, sent or received, in bytes."},
	famStoreBytes:      {"gauge", "Size of the store as counted against --quota-bytes."},
	famQuotaBytes:      {"gauge", "The store quota (--quota-bytes)."},
	famStoreKeys:       {"gauge", "Keys in the store."},
}

func writeMeta(b *bytes.Buffer, family string, d familyDesc) {
	b.WriteString("# HELP " + family + " " + escapeHelp(d.help) + "\n# TYPE " + family + " " + d.typ + "\n")
}

func meta(b *bytes.Buffer, family string) {
	d, ok := ownFamilies[family]
	if !ok {
		panic("ops: family " + family + " missing from ownFamilies")
	}
	writeMeta(b, family, d)
}

func writeScalar(b *bytes.Buffer, family string, v uint64) {
	meta(b, family)
	writeUintLine(b, family+" ", v)
}

// ownExpositionBytes is the initial buffer of writeOwn, about the size of
// a scrape with a handful of peers, so it rarely grows.
const ownExpositionBytes = 128 << 10

// writeOwn writes every family of ops.Metrics with its metadata. It is
// the Set's metrics writer, so it runs inside Set.WritePrometheus, maybe
// concurrently with another scrape: it builds its text in a buffer of its
// own and writes it once.
func (m *Metrics) writeOwn(w io.Writer) {
	b := bytes.NewBuffer(make([]byte, 0, ownExpositionBytes))
	meta(b, famRequests)
	for e := range numEndpoints {
		for s := range numStatuses {
			writeUintLine(b, m.requestPrefixes[e][s], m.requests[e][s].Load())
		}
	}
	meta(b, famRequestSeconds)
	for e := range numEndpoints {
		for c := range numClasses {
			m.requestSeconds[e][c].writeSeries(b)
		}
	}
	writeScalar(b, famInflight, uint64(max(m.inflight.Load(), 0)))

	writeScalar(b, famProposals, m.proposals.Load())
	writeScalar(b, famProposalsFailed, m.proposalsFailed.Load())
	meta(b, famCommitSeconds)
	m.commitSeconds.writeSeries(b)
	meta(b, famFsyncSeconds)
	m.fsyncSeconds.writeSeries(b)
	meta(b, famApplySeconds)
	m.applySeconds.writeSeries(b)
	meta(b, famBatchEntries)
	m.batchEntries.writeSeries(b)
	meta(b, famBatchBytes)
	m.batchBytes.writeSeries(b)
	meta(b, famBatchOldestWait)
	m.batchOldestWait.writeSeries(b)
	meta(b, famBatchCommit)
	m.batchCommit.writeSeries(b)

	writeScalar(b, famTerm, m.term.Load())
	writeScalar(b, famCommitIndex, m.commitIndex.Load())
	writeScalar(b, famAppliedIndex, m.appliedIndex.Load())
	writeScalar(b, famHasLeader, m.hasLeader.Load())
	writeScalar(b, famIsLeader, m.isLeader.Load())
	writeScalar(b, famLeaderChanges, m.leaderChanges.Load())
	writeScalar(b, famElections, m.elections.Load())
	writeScalar(b, famPreVotes, m.preVotes.Load())

	m.writePeers(b)

	meta(b, famSnapshots)
	for op := range numSnapshotOps {
		writeUintLine(b, m.snapshotPrefixes[op], m.snapshots[op].Load())
	}
	meta(b, famSnapshotBytes)
	for op := range numSnapshotOps {
		m.snapshotBytes[op].writeSeries(b)
	}

	writeScalar(b, famStoreBytes, m.storeBytes.Load())
	writeScalar(b, famQuotaBytes, m.quotaBytes.Load())
	writeScalar(b, famStoreKeys, m.storeKeys.Load())
	_, _ = w.Write(b.Bytes()) // a failed write is the scraper's problem
}

// writePeers writes the per-peer families, peers sorted by name. The
// families' metadata is written even with no peers, so dashboards and
// the checks below see them on a single node too.
func (m *Metrics) writePeers(b *bytes.Buffer) {
	m.peersMu.Lock()
	peers := make([]*PeerMetrics, 0, len(m.peers))
	for _, p := range m.peers {
		peers = append(peers, p)
	}
	m.peersMu.Unlock()
	sort.Slice(peers, func(i, j int) bool { return peers[i].name < peers[j].name })
	for _, f := range [...]struct {
		family string
		value  func(*PeerMetrics) uint64
	}{
		{famPeerLag, func(p *PeerMetrics) uint64 { return p.lagEntries.Load() }},
		{famPeerInflight, func(p *PeerMetrics) uint64 { return p.inflightBytes.Load() }},
		{famPeerReachable, func(p *PeerMetrics) uint64 { return p.reachable.Load() }},
	} {
		meta(b, f.family)
		for _, p := range peers {
			writeUintLine(b, f.family+`{peer="`+escapeLabelValue(p.name)+`"} `, f.value(p))
		}
	}
}

// escapeLabelValue escapes a label value per the text format: backslash,
// double quote and newline.
func escapeLabelValue(s string) string {
	if !strings.ContainsAny(s, "\\\"\n") {
		return s
	}
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

// escapeHelp escapes HELP text per the text format: backslash and newline.
func escapeHelp(s string) string {
	if !strings.ContainsAny(s, "\\\n") {
		return s
	}
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}

// validMetricName reports whether s matches [a-zA-Z_:][a-zA-Z0-9_:]*.
func validMetricName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (i > 0 && c >= '0' && c <= '9')
		if !ok {
			return false
		}
	}
	return true
}
