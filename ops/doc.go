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
// The node's files for operators live beside the package: edgekv.service
// (systemd unit), edgekv.env (every flag as an EDGEKV_ variable) and
// RUNBOOKS.md.
package ops
