// Package ops is the operating surface of an edgekv node: the node's
// Prometheus metrics (one *metrics.Set owned by a Metrics value, no global
// registry), the request-metrics wrapper for the fasthttp API, and the
// /metrics and /debug/pprof/ handlers the node runtime mounts.
//
// It must never sit in the way of a request: recording a request, a
// proposal, an fsync or a peer's lag is a few atomic adds on series that
// were created up front (a fixed table indexed by small integers), with no
// map lookup, no label formatting and no allocation. Everything that
// formats text happens at scrape time, off the hot path.
//
// It must never write an exposition that Prometheus would reject: every
// family carries HELP and TYPE lines, histograms use cumulative `le`
// buckets (usable with histogram_quantile), and families other packages
// write onto the same Set without metadata (edgekv_batch_*, edgekv_trace_*)
// are given theirs at scrape time (see Describe).
//
// # API for the runtime
//
// At start, once per process:
//
//	ops.SetProfilingRates(ops.ProfilingRates{MutexFraction: 100}) // --mutex-profile-fraction, --block-profile-rate
//	m := ops.NewMetrics()
//	b, err := batch.New(batch.Config{..., Metrics: m.Set(), Observer: m}) // and every other package's metrics
//	api.Handle("/metrics", m.MetricsHandler)
//	api.Handle("/v1/cluster", ops.ClusterHandler(node.fillClusterStatus))
//	api.Handle("/debug/pprof", ops.PprofHandler) // redirects to /debug/pprof/
//	api.HandlePrefix("/debug/pprof/", ops.PprofHandler)
//	srv := api.Server()
//	srv.Handler = m.Middleware(srv.Handler) // after every Handle call
//
// Recording (any goroutine, no allocation, no lock):
//
//	m.AddProposals(n); m.AddProposalsFailed(n)       // per client write
//	m.ObserveCommit(nanos)                             // propose -> committed
//	m.ObserveFsync(nanos)                              // each WAL fsync
//	m.ObserveApply(nanos)                              // each applied batch
//	m.ObserveBatch(entries, bytes, oldestWaitNanos)    // the batcher (batch.Config.Observer = m)
//	m.ObserveBatchCommit(nanos)                        // the batcher: a batch committed
//	m.SetRaftState(term, commit, applied, hasLeader, isLeader) // after each Ready
//	m.IncLeaderChanges(); m.IncElections(); m.IncPreVotes()
//	m.ObserveSnapshot(ops.SnapshotTaken|SnapshotSent|SnapshotReceived, sizeBytes)
//	m.SetStore(sizeBytes, quotaBytes, keys)
//	p := m.AddPeer(name) // on membership change; m.RemovePeer(name) when it leaves
//	p.SetLag(entries); p.SetInflightBytes(n); p.SetReachable(up)
//
// Families written onto m.Set() by other packages get HELP and TYPE from a
// table here (batch's and ebpf's) or from m.Describe(family, type, help);
// never turn on VictoriaMetrics' global metrics.ExposeMetadata (it would
// make batch's writers repeat their metadata per series; the handler
// drops the repeats, but the table is the source of truth).
//
// The node's files for operators live beside the package: edgekv.service
// (systemd unit) and edgekv.env (every flag as an EDGEKV_ variable); the
// runbooks that use them are in the repository's README.
package ops
