package ops

import (
	"bytes"
	"strings"

	"github.com/valyala/fasthttp"
)

// foreignFamilies describes families other packages write onto the Set
// without metadata: batch (batch/metrics.go) and ebpf (ebpf/metrics.go).
// TestExpositionWithBatcher fails when batch adds a family missing here.
var foreignFamilies = func() map[string]familyDesc {
	d := map[string]familyDesc{
		"edgekv_batch_accepted_total":         {"counter", "Proposals accepted into the batcher's queue."},
		"edgekv_batch_rejected_total":         {"counter", "Proposals refused by the batcher, by reason (full_count, full_bytes, too_large, closed)."},
		"edgekv_batch_pending_proposals":      {"gauge", "Proposals queued and not yet batched."},
		"edgekv_batch_pending_bytes":          {"gauge", "Bytes of proposals queued and not yet batched."},
		"edgekv_batch_inflight_batches":       {"gauge", "Batches handed to Raft and not yet finished."},
		"edgekv_batch_batches_total":          {"counter", "Batches cut, by what made them leave (idle, full, delay)."},
		"edgekv_batch_entries_total":          {"counter", "Proposals put into batches."},
		"edgekv_batch_bytes_total":            {"counter", "Bytes put into batches."},
		"edgekv_batch_wait_seconds_total":     {"counter", "Total time proposals spent waiting in the batcher."},
		"edgekv_batch_finished_total":         {"counter", "Batches finished, by outcome (committed, failed, forwarded to the leader, expired, late)."},
		"edgekv_batch_commit_latency_seconds": {"gauge", "Smoothed commit latency the adaptive batcher holds batches for."},
		// Names under the prefixes batch's doc gives the runtime:
		// Registry.RegisterMetrics(set, "edgekv_batch_waiters") and
		// Queue.RegisterMetrics(set, "edgekv_batch_reads").
		"edgekv_batch_waiters_in_use":          {"gauge", "Request waiters handed out and not yet completed."},
		"edgekv_batch_waiters_completed_total": {"counter", "Request waiters completed with a result."},
		"edgekv_batch_waiters_stale_total":     {"counter", "Completions for a waiter that had already been reused (ignored)."},
		"edgekv_batch_waiters_timed_out_total": {"counter", "Waiters whose client gave up before the result arrived."},
		"edgekv_batch_waiters_exhausted_total": {"counter", "Requests refused because every waiter was in use."},
		"edgekv_batch_reads_pending":           {"gauge", "Linearizable reads queued for a ReadIndex round."},
		"edgekv_batch_reads_pending_bytes":     {"gauge", "Bytes of linearizable reads queued."},
		"edgekv_batch_reads_accepted_total":    {"counter", "Linearizable reads accepted into the queue."},
		"edgekv_batch_reads_rejected_total":    {"counter", "Linearizable reads refused by the queue, by reason."},
		"edgekv_trace_stage_seconds":           {"histogram", "eBPF-traced time between two request stages (from, to)."},
		"edgekv_trace_batch_seconds":           {"histogram", "eBPF-traced time from request received to answered."},
		"edgekv_trace_stage_hits_total":        {"counter", "eBPF trace points hit, by stage."},
		"edgekv_trace_unpaired_total":          {"counter", "eBPF stage events without a matching start, by reason."},
		"edgekv_trace_syscall_seconds":         {"histogram", "eBPF-traced syscall latency, by syscall."},
		"edgekv_trace_runqueue_seconds":        {"histogram", "eBPF-traced run-queue latency of the node's threads."},
		"edgekv_trace_read_errors_total":       {"counter", "Failures reading the eBPF maps at scrape time."},
	}
	return d
}()

// undescribedHelp is the HELP of a family nobody described: still valid
// text format, and the tests make sure no known family ends up with it.
const undescribedHelp = "Family without a registered description (ops.Metrics.Describe)."

// exposition accumulates one scrape; pooled in Metrics.expositions, so a
// steady scrape rate reuses its buffers.
type exposition struct {
	raw, out bytes.Buffer
	report   expositionReport
}

// expositionReport lists what normalize had to repair or could not.
type expositionReport struct {
	undescribed []string // families given undescribedHelp
	duplicated  []string // families whose HELP or TYPE came twice (extra lines dropped)
	split       []string // families whose samples came in two separate groups
}

// WritePrometheus writes the whole exposition (the Set, with metadata
// for every family, then the Go runtime and process families) to dst.
func (m *Metrics) WritePrometheus(dst *bytes.Buffer) {
	e := m.getExposition()
	m.writeExposition(e)
	dst.Write(e.out.Bytes())
	m.putExposition(e)
}

func (m *Metrics) writeExposition(e *exposition) {
	m.scrapeMu.Lock()
	defer m.scrapeMu.Unlock()
	e.raw.Reset()
	e.out.Reset()
	m.set.WritePrometheus(&e.raw)
	m.runtime.write(&e.raw)
	m.describedMu.Lock()
	described := m.described
	e.report = normalize(&e.out, e.raw.Bytes(), func(family string) (familyDesc, bool) {
		if d, ok := ownFamilies[family]; ok {
			return d, true
		}
		if d, ok := runtimeFamilies[family]; ok {
			return d, true
		}
		d, ok := described[family]
		return d, ok
	})
	m.describedMu.Unlock()
}

// MetricsHandler serves GET /metrics in the Prometheus text format
// (version 0.0.4).
func (m *Metrics) MetricsHandler(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Response.Header.Set("Allow", "GET, HEAD")
		ctx.Error("method not allowed", fasthttp.StatusMethodNotAllowed)
		return
	}
	e := m.getExposition()
	m.writeExposition(e)
	ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetBody(e.out.Bytes()) // copies
	m.putExposition(e)
}

func (m *Metrics) getExposition() *exposition {
	if e, ok := m.expositions.Get().(*exposition); ok {
		return e
	}
	return new(exposition)
}

func (m *Metrics) putExposition(e *exposition) {
	e.raw.Reset()
	e.out.Reset()
	e.report = expositionReport{}
	m.expositions.Put(e)
}

// normalize copies the exposition in raw to out so that every family
// has exactly one HELP (non-empty) and one TYPE line before its first
// sample. For a family describe knows, the description replaces its
// first metadata line (or is written before its first sample). For others, the first
// non-empty HELP and first TYPE are kept, repeats dropped, and a missing
// HELP or TYPE is filled with a fallback (reported as undescribed). Other
// comments and blank lines are dropped.
func normalize(out *bytes.Buffer, raw []byte, describe func(string) (familyDesc, bool)) expositionReport {
	var rep expositionReport
	type state struct{ help, typ, samples bool }
	seen := make(map[string]*state)
	get := func(fam string) *state {
		s := seen[fam]
		if s == nil {
			s = new(state)
			seen[fam] = s
		}
		return s
	}
	desc := func(fam string) familyDesc {
		if d, ok := describe(fam); ok {
			return d
		}
		rep.undescribed = append(rep.undescribed, fam)
		typ := "untyped"
		if strings.HasSuffix(fam, "_total") {
			typ = "counter"
		}
		return familyDesc{typ: typ, help: undescribedHelp}
	}
	familyOf := func(name string) string {
		if _, ok := describe(name); ok {
			return name
		}
		for _, suffix := range [...]string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok {
				if d, ok := describe(base); ok && (d.typ == "histogram" || d.typ == "summary") {
					return base
				}
			}
		}
		return name
	}
	ensureHelp := func(fam string, s *state) {
		if !s.help {
			s.help = true
			out.WriteString("# HELP " + fam + " " + escapeHelp(desc(fam).help) + "\n")
		}
	}
	last := ""
	for len(raw) > 0 {
		var line []byte
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			line, raw = raw, nil
		}
		line = bytes.TrimRight(line, " \r\t")
		if len(line) == 0 {
			continue
		}
		if line[0] == '#' {
			fields := strings.SplitN(string(line), " ", 4)
			if len(fields) < 3 || (fields[1] != "HELP" && fields[1] != "TYPE") {
				continue
			}
			fam := fields[2]
			s := get(fam)
			if d, ok := describe(fam); ok {
				// Our description is authoritative: it replaces the
				// first metadata line and the rest are dropped. Writing
				// it here (not only at the first sample) keeps families
				// that have no series yet, like the per-peer ones.
				if !s.help {
					s.help = true
					out.WriteString("# HELP " + fam + " " + escapeHelp(d.help) + "\n")
				}
				if !s.typ {
					s.typ = true
					out.WriteString("# TYPE " + fam + " " + d.typ + "\n")
				}
				continue
			}
			text := ""
			if len(fields) == 4 {
				text = strings.TrimSpace(fields[3])
			}
			switch fields[1] {
			case "HELP":
				if s.help {
					rep.duplicated = append(rep.duplicated, fam)
					continue
				}
				if text == "" {
					continue // the fallback is written with the TYPE or the first sample
				}
				s.help = true
				out.Write(line)
				out.WriteByte('\n')
			case "TYPE":
				if s.typ {
					rep.duplicated = append(rep.duplicated, fam)
					continue
				}
				ensureHelp(fam, s)
				s.typ = true
				out.WriteString("# TYPE " + fam + " " + text + "\n")
			}
			continue
		}
		end := bytes.IndexAny(line, "{ ")
		if end < 0 {
			continue // not a sample line
		}
		fam := familyOf(string(line[:end]))
		s := get(fam)
		if fam != last && s.samples {
			rep.split = append(rep.split, fam)
		}
		if !s.help || !s.typ {
			d := desc(fam)
			if !s.help {
				s.help = true
				out.WriteString("# HELP " + fam + " " + escapeHelp(d.help) + "\n")
			}
			if !s.typ {
				s.typ = true
				out.WriteString("# TYPE " + fam + " " + d.typ + "\n")
			}
		}
		s.samples = true
		last = fam
		out.Write(line)
		out.WriteByte('\n')
	}
	return rep
}
