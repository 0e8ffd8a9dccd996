// Command compare measures edgekv against etcd on the same machine, one
// system at a time, with the same workload, and prints one table with
// both systems and edgekv's gain per row (issue 10). It also measures
// edgekv alone with a round-trip time added between its nodes.
//
// It lives in its own Go module so that etcd's client and its
// dependencies never enter the edgekv binary's module. It drives edgekv
// with edgekv's own load generator (loadgen.Run) and etcd with a driver
// that measures the same way (per-worker HdrHistograms, open-loop
// latency from the scheduled time); server CPU comes from /proc/<pid>/stat
// of the processes it started.
//
// It must never stop a process it did not start, never keep running
// servers after it exits (SIGTERM, then SIGKILL after a grace period),
// and never quote a figure it did not measure: a row that failed says so.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/edgekv/edgekv/loadgen"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, log)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) int {
	o, err := parseOptions(args, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "compare:", err)
		return 2
	}
	rep, err := execute(ctx, o, log)
	if rep != nil {
		if werr := writeReport(stdout, rep, o); werr != nil {
			fmt.Fprintln(stderr, "compare:", werr)
			return 1
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "compare:", err)
		return 1
	}
	return 0
}

// report is the JSON output.
type report struct {
	Mode        string      `json:"mode"`
	StartedAt   time.Time   `json:"started_at"`
	GoVersion   string      `json:"go_version"`
	CPUs        int         `json:"cpus"`
	EtcdVersion string      `json:"etcd_version,omitempty"`
	Options     *options    `json:"options"`
	OpenRate    float64     `json:"open_rate,omitempty"`
	Rows        []reportRow `json:"rows,omitempty"`
	RTTRows     []rttRow    `json:"rtt_rows,omitempty"`
}

func writeReport(w io.Writer, rep *report, o *options) error {
	var err error
	if rep.Mode == modeRTT {
		err = writeRTTTable(w, rep.RTTRows, o.Repeat, o.RTT)
	} else {
		err = writeTable(w, rep.Rows, o.Repeat)
	}
	if err != nil {
		return err
	}
	if o.JSONPath == "" {
		return nil
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the JSON report: %w", err)
	}
	b = append(b, '\n')
	if o.JSONPath == "-" {
		_, err = w.Write(b)
		return err
	}
	if err := os.WriteFile(o.JSONPath, b, 0o644); err != nil {
		return fmt.Errorf("writing the JSON report: %w", err)
	}
	return nil
}

// execute runs the mode and returns what was measured, even when a part
// of it failed (the error then says what).
func execute(ctx context.Context, o *options, log *slog.Logger) (*report, error) {
	rep := &report{Mode: o.Mode, StartedAt: time.Now().UTC(), GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), Options: o}
	work, cleanup, err := workDir(o, log)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	if o.Mode == modeRTT {
		rep.RTTRows, err = runRTT(ctx, o, work, log)
		return rep, err
	}
	rep.Rows = newReportRows(comparisonRows(o.OpenFraction, o.OpenClients))
	var errs []error
	if o.runs(sysEtcd) {
		bin, err := ensureEtcd(o, log)
		if err != nil {
			errs = append(errs, err)
			noteAll(rep.Rows, sysEtcd, err.Error())
		} else {
			rep.EtcdVersion = etcdVersion(bin)
			if err := runSystem(ctx, o, rep, sysEtcd, bin, filepath.Join(work, sysEtcd), log); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if o.runs(sysEdgekv) && ctx.Err() == nil {
		if err := runSystem(ctx, o, rep, sysEdgekv, o.EdgekvBin, filepath.Join(work, sysEdgekv), log); err != nil {
			errs = append(errs, err)
		}
	}
	return rep, errors.Join(errs...)
}

func newReportRows(specs []rowSpec) []reportRow {
	rows := make([]reportRow, len(specs))
	for i, s := range specs {
		rows[i] = reportRow{Spec: s, Systems: map[string]*systemRow{}}
	}
	return rows
}

func noteAll(rows []reportRow, system, note string) {
	for _, r := range rows {
		r.Systems[system] = &systemRow{Note: note}
	}
}

func workDir(o *options, log *slog.Logger) (string, func(), error) {
	base := o.WorkDir
	if base != "" {
		if err := os.MkdirAll(base, 0o755); err != nil {
			return "", nil, fmt.Errorf("--work-dir: %w", err)
		}
	}
	dir, err := os.MkdirTemp(base, "edgekv-compare-")
	if err != nil {
		return "", nil, fmt.Errorf("creating the work dir: %w", err)
	}
	return dir, func() {
		if o.Keep {
			log.Info("kept data dirs and logs", "dir", dir)
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			log.Warn("removing the work dir", "dir", dir, "err", err)
		}
	}, nil
}

// ensureEtcd finds the etcd binary, installing Debian's etcd-server
// package when it is missing and that is allowed.
func ensureEtcd(o *options, log *slog.Logger) (string, error) {
	if p, err := exec.LookPath(o.EtcdBin); err == nil {
		return p, nil
	}
	if !o.InstallEtcd || o.EtcdBin != "etcd" {
		return "", fmt.Errorf("etcd binary %q not found (install Debian's etcd-server package, or pass --etcd-bin)", o.EtcdBin)
	}
	if os.Geteuid() != 0 {
		return "", errors.New("etcd is not installed and installing it needs root: run `apt-get install -y etcd-server` as root, or pass --etcd-bin")
	}
	log.Info("etcd not found; installing Debian's etcd-server package")
	for _, args := range [][]string{{"update"}, {"install", "-y", "etcd-server"}} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("apt-get %s: %w", strings.Join(args, " "), err)
		}
	}
	p, err := exec.LookPath("etcd")
	if err != nil {
		return "", fmt.Errorf("etcd-server installed but etcd is not in PATH: %w", err)
	}
	log.Warn("on a host running systemd the package also starts etcd.service on port 2379; stop it (systemctl stop etcd) so it does not use CPU during the measurement")
	return p, nil
}

func etcdVersion(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(first)
}

// workload is one run of a driver.
type workload struct {
	Workload   string
	Clients    int
	Rate       float64
	Duration   time.Duration
	Requests   uint64
	Sequential bool
	BatchSize  int
}

// driver sends a workload to one system and measures it.
type driver interface {
	run(ctx context.Context, w workload) (*loadgen.Result, error)
}

// edgekvDriver is edgekv's own load generator.
type edgekvDriver struct {
	endpoints []string
	o         *options
}

func (d edgekvDriver) run(ctx context.Context, w workload) (*loadgen.Result, error) {
	cfg := loadgen.DefaultConfig()
	cfg.Endpoints = d.endpoints
	cfg.Workload = w.Workload
	cfg.Consistency = "linearizable"
	cfg.Concurrency = w.Clients
	cfg.Rate = w.Rate
	cfg.Duration = w.Duration
	cfg.Requests = w.Requests
	cfg.Warmup = 0 // warmed up by a separate run, so that server CPU brackets the measured part only
	cfg.ValueBytes = d.o.ValueBytes
	cfg.KeySpace = d.o.KeySpace
	cfg.KeyPrefix = keyPrefix
	cfg.KeyOrder = loadgen.KeysRandom
	if w.Sequential {
		cfg.KeyOrder = loadgen.KeysSequential
	}
	cfg.Seed = d.o.Seed
	cfg.Timeout = d.o.Timeout
	if w.BatchSize > 0 {
		cfg.BatchSize = w.BatchSize
	}
	return loadgen.Run(ctx, cfg)
}

// keyPrefix is loadgen's default, used on both systems.
const keyPrefix = "bench/"

type etcdDriver struct {
	endpoints []string
	o         *options
}

func (d etcdDriver) run(ctx context.Context, w workload) (*loadgen.Result, error) {
	conns := w.Clients
	if d.o.EtcdConns > 0 {
		conns = min(d.o.EtcdConns, w.Clients)
	}
	return runEtcdLoad(ctx, etcdLoad{
		Endpoints: d.endpoints, Workload: w.Workload, Concurrency: w.Clients, Conns: conns,
		Rate: w.Rate, Duration: w.Duration, Requests: w.Requests, Sequential: w.Sequential,
		ValueBytes: d.o.ValueBytes, KeySpace: d.o.KeySpace, KeyPrefix: keyPrefix,
		BatchSize: w.BatchSize, Seed: d.o.Seed, Timeout: d.o.Timeout,
	})
}

// session is one running system under test.
type session struct {
	cl      *cluster
	drv     driver
	sampler cpuSampler
	o       *options
}

func startSession(ctx context.Context, o *options, system, bin, dir string, peerOneWay time.Duration, log *slog.Logger) (*session, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	token := fmt.Sprintf("compare-%d", time.Now().UnixNano())
	var cl *cluster
	var err error
	if system == sysEtcd {
		cl, err = startEtcd(ctx, bin, dir, token, log)
	} else {
		cl, err = startEdgekv(ctx, bin, dir, token, o.EdgekvArgs, peerOneWay, log)
	}
	if err != nil {
		if cl != nil {
			if serr := cl.stop(); serr != nil {
				log.Warn("stopping a cluster that failed to start", "err", serr)
			}
		}
		return nil, err
	}
	s := &session{cl: cl, sampler: newCPUSampler(), o: o}
	if system == sysEtcd {
		s.drv = etcdDriver{endpoints: cl.clientEndpoints(), o: o}
	} else {
		s.drv = edgekvDriver{endpoints: cl.clientEndpoints(), o: o}
	}
	return s, nil
}

// preload writes every key once, so that gets find their keys.
func (s *session) preload(ctx context.Context) error {
	clients := int(min(uint64(64), s.o.KeySpace))
	res, err := s.drv.run(ctx, workload{Workload: loadgen.WorkloadPut, Clients: clients, Requests: s.o.KeySpace, Sequential: true})
	if err != nil {
		return fmt.Errorf("preload: %w", err)
	}
	if res.Errors > 0 {
		return fmt.Errorf("preload: %d of %d puts failed (statuses %v, transport %v)", res.Errors, res.Requests, res.Statuses, res.TransportErrors)
	}
	return nil
}

// measure warms up, then runs one measured repetition of spec bracketed
// by the servers' CPU time.
func (s *session) measure(ctx context.Context, spec rowSpec, rate float64) (sample, error) {
	w := workload{Workload: spec.Workload, Clients: spec.Clients, Rate: rate, Duration: s.o.Duration, BatchSize: spec.BatchSize}
	if s.o.Warmup > 0 {
		warm := w
		warm.Duration = s.o.Warmup
		if _, err := s.drv.run(ctx, warm); err != nil {
			return sample{}, fmt.Errorf("%s warm-up: %w", spec.ID, err)
		}
	}
	pids := s.cl.pids()
	before, err := s.sampler.sample(pids)
	if err != nil {
		return sample{}, err
	}
	res, err := s.drv.run(ctx, w)
	if err != nil {
		return sample{}, fmt.Errorf("%s: %w", spec.ID, err)
	}
	after, err := s.sampler.sample(pids)
	if err != nil {
		return sample{}, err
	}
	smp := sampleFrom(spec, res, (after - before).Seconds())
	if res.Errors > 0 {
		smp.Statuses, smp.TransportErrors, smp.ErrorSamples = res.Statuses, res.TransportErrors, res.TransportErrorSamples
	}
	return smp, nil
}

// runSystem starts one system, runs every row on it Repeat times and
// stops it. Closed-loop rows run first (interleaved over repetitions, so
// that drift spreads over all rows), the open-loop row last: its rate
// comes from etcd's put rows.
func runSystem(ctx context.Context, o *options, rep *report, system, bin, dir string, log *slog.Logger) error {
	s, err := startSession(ctx, o, system, bin, dir, 0, log)
	if err != nil {
		noteAll(rep.Rows, system, "did not start: "+firstLine(err.Error()))
		return fmt.Errorf("%s: %w", system, err)
	}
	defer func() {
		if err := s.cl.stop(); err != nil {
			log.Warn("stopping cluster", "system", system, "err", err)
		}
	}()
	for _, r := range rep.Rows {
		r.Systems[system] = &systemRow{}
	}
	if err := s.preload(ctx); err != nil {
		noteAll(rep.Rows, system, firstLine(err.Error()))
		return fmt.Errorf("%s: %w", system, err)
	}
	var errs []error
	runRow := func(r reportRow, rate float64) {
		sr := r.Systems[system]
		if sr.Note != "" || ctx.Err() != nil {
			return
		}
		smp, err := s.measure(ctx, r.Spec, rate)
		if err != nil {
			sr.Note = firstLine(err.Error())
			errs = append(errs, fmt.Errorf("%s: %w", system, err))
			return
		}
		log.Info("measured", "system", system, "row", r.Spec.ID, "ok/s", fmt.Sprintf("%.0f", smp.OKPerSec), "p50_ms", smp.P50Us/1e3, "p99_ms", smp.P99Us/1e3, "server_cpu_us_per_op", fmt.Sprintf("%.0f", smp.ServerCPUUsPerOp), "errors", smp.Errors)
		sr.Samples = append(sr.Samples, smp)
		sr.Median = medianSample(sr.Samples)
	}
	for range o.Repeat {
		for _, r := range rep.Rows {
			if !r.Spec.openLoop() {
				runRow(r, 0)
			}
		}
	}
	rate := o.OpenRate
	if rate == 0 {
		rate = math.Round(maxPutRate(rep.Rows, sysEtcd) * o.OpenFraction)
	}
	rep.OpenRate = rate
	for _, r := range rep.Rows {
		if !r.Spec.openLoop() {
			continue
		}
		if rate <= 0 {
			r.Systems[system].Note = "no rate: etcd's put rate was not measured; pass --open-rate"
			continue
		}
		for range o.Repeat {
			runRow(r, rate)
		}
	}
	return errors.Join(errs...)
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}
