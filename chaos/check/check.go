// Package check judges a recorded history (chaos/history) against edgekv's
// guarantees (SPEC §3): linearizability with porcupine and chaos/model,
// and durability of acknowledged writes after the cluster is healed.
//
// It must never hang (the linearizability search is NP-hard: it runs under
// a time limit and answers Unknown when the limit passes) and never call a
// history good that it did not finish checking. On a violation it writes
// the evidence (porcupine's HTML visualization, the history as JSON lines,
// a text report) to a fresh folder and says where.
package check

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/edgekv/edgekv/chaos/history"
	"github.com/edgekv/edgekv/chaos/model"
)

// Verdict is a checker's answer.
type Verdict string

const (
	// Ok: no violation; the check finished.
	Ok Verdict = "ok"
	// Illegal: a violation was found.
	Illegal Verdict = "illegal"
	// Unknown: the time limit passed before the check finished. Never a
	// pass.
	Unknown Verdict = "unknown"
)

// DefaultTimeout bounds a linearizability check when Config.Timeout is 0.
const DefaultTimeout = 60 * time.Second

// Config tunes Run and Linearizability.
type Config struct {
	// Timeout bounds the linearizability verdict (DefaultTimeout if 0).
	Timeout time.Duration
	// VisualizeTimeout bounds the second, verbose porcupine run that
	// computes the HTML visualization of an illegal history (Timeout if
	// 0). A violation costs at most Timeout + VisualizeTimeout.
	VisualizeTimeout time.Duration
	// OutDir, when set, receives a new folder with the evidence of each
	// failing Run. Empty: nothing is written.
	OutDir string
	// Name prefixes that folder's name (for example the scenario).
	Name string
}

func (c Config) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

func (c Config) visualizeTimeout() time.Duration {
	if c.VisualizeTimeout > 0 {
		return c.VisualizeTimeout
	}
	return c.timeout()
}

// LinResult is the linearizability checker's answer.
type LinResult struct {
	Verdict    Verdict
	Ops        int // Ops given to porcupine (see model.Checked)
	Partitions int // independent key sets checked separately
	Elapsed    time.Duration

	info    porcupine.LinearizationInfo
	hasInfo bool
}

// Linearizability checks h with porcupine under cfg's time limit. An
// illegal history is checked a second time, verbosely, so that WriteHTML
// can draw it.
func Linearizability(h history.History, cfg Config) LinResult {
	start := time.Now()
	m := model.New()
	ops := model.Operations(h)
	res := LinResult{Ops: len(ops), Partitions: len(m.Partition(ops))}
	switch porcupine.CheckOperationsTimeout(m, ops, cfg.timeout()) {
	case porcupine.Ok:
		res.Verdict = Ok
	case porcupine.Illegal:
		res.Verdict = Illegal
		v, info := porcupine.CheckOperationsVerbose(m, ops, cfg.visualizeTimeout())
		res.info, res.hasInfo = info, v == porcupine.Illegal
	default:
		res.Verdict = Unknown
	}
	res.Elapsed = time.Since(start)
	return res
}

// WriteHTML writes porcupine's visualization of an illegal result.
func (r LinResult) WriteHTML(path string) error {
	if !r.hasInfo {
		return errors.New("check: no linearization info (history not illegal, or the verbose run timed out)")
	}
	if err := porcupine.VisualizePath(model.New(), r.info, path); err != nil {
		return fmt.Errorf("check: visualize: %w", err)
	}
	return nil
}

// Report is everything Run found.
type Report struct {
	Summary         Summary
	Linearizability LinResult
	Durability      DurabilityResult
	// Dir is the folder the evidence was written to ("" when nothing was
	// written: no violation, or no Config.OutDir).
	Dir string
}

// OK reports whether the history passed every check, each one finished.
func (r *Report) OK() bool {
	return r.Linearizability.Verdict == Ok && r.Durability.Verdict == Ok
}

// String is a human report: the summary, then each verdict and violation.
func (r *Report) String() string {
	var b strings.Builder
	b.WriteString(r.Summary.String())
	fmt.Fprintf(&b, "linearizability: %s (%d ops in %d partitions, %v)\n",
		r.Linearizability.Verdict, r.Linearizability.Ops, r.Linearizability.Partitions,
		r.Linearizability.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(&b, "durability: %s (%d keys final-read)\n", r.Durability.Verdict, r.Durability.Keys)
	for _, v := range r.Durability.Violations {
		fmt.Fprintf(&b, "  %s\n", v)
	}
	if r.Dir != "" {
		fmt.Fprintf(&b, "evidence: %s\n", r.Dir)
	}
	return b.String()
}

// Run validates h, checks linearizability and durability (the final reads
// are h's Ops with Final set) and, when a check does not pass and
// cfg.OutDir is set, writes the evidence to a new folder named in the
// Report. The error is for a history that cannot be checked or evidence
// that cannot be written, never for a violation.
func Run(h history.History, cfg Config) (Report, error) {
	var r Report
	if err := h.Validate(); err != nil {
		return r, fmt.Errorf("check: %w", err)
	}
	r.Summary = Summarize(h)
	dur, err := Durability(h)
	if err != nil {
		return r, err
	}
	r.Durability = dur
	r.Linearizability = Linearizability(h, cfg)
	r.Summary.Partitions = r.Linearizability.Partitions
	r.Summary.LinElapsed = r.Linearizability.Elapsed
	if r.OK() || cfg.OutDir == "" {
		return r, nil
	}
	dir, err := writeEvidence(h, &r, cfg)
	if err != nil {
		return r, err
	}
	r.Dir = dir
	return r, nil
}

// Evidence file names inside a Report's Dir.
const (
	HistoryFile = "history.jsonl"
	HTMLFile    = "linearizability.html"
	ReportFile  = "report.txt"
)

func writeEvidence(h history.History, r *Report, cfg Config) (string, error) {
	name := cfg.Name
	if name == "" {
		name = "violation"
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return "", fmt.Errorf("check: evidence folder: %w", err)
	}
	dir, err := os.MkdirTemp(cfg.OutDir, name+"-"+time.Now().UTC().Format("20060102T150405")+"-")
	if err != nil {
		return "", fmt.Errorf("check: evidence folder: %w", err)
	}
	if err := history.WriteFile(filepath.Join(dir, HistoryFile), h); err != nil {
		return "", fmt.Errorf("check: evidence: %w", err)
	}
	if r.Linearizability.hasInfo {
		if err := r.Linearizability.WriteHTML(filepath.Join(dir, HTMLFile)); err != nil {
			return "", fmt.Errorf("check: evidence: %w", err)
		}
	}
	r.Dir = dir
	if err := os.WriteFile(filepath.Join(dir, ReportFile), []byte(r.String()), 0o644); err != nil {
		return "", fmt.Errorf("check: evidence: %w", err)
	}
	return dir, nil
}
