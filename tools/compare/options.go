package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Modes.
const (
	modeCompare = "compare" // etcd and edgekv side by side, issue 10's rows
	modeRTT     = "rtt"     // edgekv alone with added peer round-trip time
)

// options are the command line.
type options struct {
	Mode        string   `json:"mode"`
	Systems     []string `json:"systems"` // which of etcd, edgekv run (compare mode)
	EdgekvBin   string   `json:"edgekv_bin"`
	EdgekvArgs  []string `json:"edgekv_args"`
	EtcdBin     string   `json:"etcd_bin"`
	InstallEtcd bool     `json:"install_etcd"`
	EtcdConns   int      `json:"etcd_conns"` // 0: one connection per client, as loadgen

	Repeat     int           `json:"repeat"`
	Duration   time.Duration `json:"duration_ns"`
	Warmup     time.Duration `json:"warmup_ns"`
	ValueBytes int           `json:"value_bytes"`
	KeySpace   uint64        `json:"key_space"`
	Seed       uint64        `json:"seed"`
	Timeout    time.Duration `json:"timeout_ns"`

	OpenFraction float64 `json:"open_fraction"`
	OpenRate     float64 `json:"open_rate"` // > 0: overrides the rate derived from etcd
	OpenClients  int     `json:"open_clients"`

	RTT        time.Duration `json:"rtt_ns"`
	RTTClients []int         `json:"rtt_clients"`

	JSONPath string `json:"json_path"`
	WorkDir  string `json:"work_dir"`
	Keep     bool   `json:"keep"`
}

func parseOptions(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var systems, edgekvArgs, rttClients string
	fs.StringVar(&o.Mode, "mode", modeCompare, "compare: etcd and edgekv side by side; rtt: edgekv alone with --rtt added between nodes")
	fs.StringVar(&systems, "systems", "etcd,edgekv", "compare mode: which systems to run (etcd, edgekv or both)")
	fs.StringVar(&o.EdgekvBin, "edgekv-bin", "", "path of the edgekv binary (required when edgekv runs)")
	fs.StringVar(&edgekvArgs, "edgekv-args", "", "extra flags for every edgekv node, space separated (e.g. \"--log-level warn\")")
	fs.StringVar(&o.EtcdBin, "etcd-bin", "etcd", "etcd binary (name looked up in PATH, or a path)")
	fs.BoolVar(&o.InstallEtcd, "install-etcd", true, "install Debian's etcd-server package with apt-get when etcd is missing (needs root)")
	fs.IntVar(&o.EtcdConns, "etcd-conns", 0, "gRPC connections the etcd driver opens (0: one per client, like loadgen's one HTTP connection per client)")
	fs.IntVar(&o.Repeat, "repeat", 3, "repetitions of every row; the table quotes medians")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "measured time of one repetition of a row")
	fs.DurationVar(&o.Warmup, "warmup", 2*time.Second, "unmeasured run of the same workload before each repetition")
	fs.IntVar(&o.ValueBytes, "value-size", 256, "value size in bytes")
	fs.Uint64Var(&o.KeySpace, "key-space", 10000, "number of distinct keys (all written once before the first row)")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of key and value choices")
	fs.DurationVar(&o.Timeout, "timeout", 10*time.Second, "bound on one request")
	fs.Float64Var(&o.OpenFraction, "open-fraction", 0.5, "open-loop row: fraction of etcd's maximum measured put rate")
	fs.Float64Var(&o.OpenRate, "open-rate", 0, "open-loop row: requests/s, overriding the rate derived from etcd (needed when etcd does not run)")
	fs.IntVar(&o.OpenClients, "open-clients", 256, "open-loop row: workers, the bound on outstanding requests")
	fs.DurationVar(&o.RTT, "rtt", 50*time.Millisecond, "rtt mode: round-trip time added between every pair of edgekv nodes")
	fs.StringVar(&rttClients, "rtt-clients", "256,1024", "rtt mode: client counts, comma separated")
	fs.StringVar(&o.JSONPath, "json", "", "also write every sample and median as JSON to this file (- for stdout)")
	fs.StringVar(&o.WorkDir, "work-dir", "", "where the clusters' data dirs go (default: a new directory under $TMPDIR; put it on the disk you want to measure)")
	fs.BoolVar(&o.Keep, "keep", false, "keep the data dirs and logs after the run")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q (this tool takes flags only)", fs.Args())
	}
	o.Systems = splitList(systems)
	o.EdgekvArgs = strings.Fields(edgekvArgs)
	var errs []error
	for _, s := range splitList(rttClients) {
		c, err := strconv.Atoi(s)
		if err != nil || c < 1 || c > 16384 {
			errs = append(errs, fmt.Errorf("--rtt-clients: %q is not a client count from 1 to 16384", s))
			continue
		}
		o.RTTClients = append(o.RTTClients, c)
	}
	if err := o.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return o, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (o *options) runs(system string) bool {
	if o.Mode == modeRTT {
		return system == sysEdgekv
	}
	for _, s := range o.Systems {
		if s == system {
			return true
		}
	}
	return false
}

func (o *options) validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(o.Mode == modeCompare || o.Mode == modeRTT, "--mode %q: want %s or %s", o.Mode, modeCompare, modeRTT)
	check(len(o.Systems) > 0, "--systems: name etcd, edgekv or both")
	for _, s := range o.Systems {
		check(s == sysEtcd || s == sysEdgekv, "--systems: unknown system %q (want etcd, edgekv)", s)
	}
	check(!o.runs(sysEdgekv) || o.EdgekvBin != "", "--edgekv-bin is required when edgekv runs (build it with: go build -o /tmp/edgekv . at the repository root)")
	check(o.EtcdConns >= 0, "--etcd-conns %d: must not be negative", o.EtcdConns)
	check(o.Repeat >= 1 && o.Repeat <= 100, "--repeat %d: want 1 to 100", o.Repeat)
	check(o.Duration > 0 && o.Duration <= time.Hour, "--duration %v: want more than 0 and at most an hour", o.Duration)
	check(o.Warmup >= 0 && o.Warmup <= time.Hour, "--warmup %v: want 0 to an hour", o.Warmup)
	check(o.ValueBytes >= 0 && o.ValueBytes <= 1<<20, "--value-size %d: want 0 to 1048576", o.ValueBytes)
	check(o.KeySpace >= 1 && o.KeySpace <= 1<<24, "--key-space %d: want 1 to %d", o.KeySpace, 1<<24)
	check(o.Mode != modeCompare || o.KeySpace >= batchRowSize, "--key-space %d: the batch row needs at least %d keys (etcd refuses a key twice in one Txn)", o.KeySpace, batchRowSize)
	check(o.Timeout > 0 && o.Timeout <= time.Hour, "--timeout %v: want more than 0 and at most an hour", o.Timeout)
	check(o.OpenFraction > 0 && o.OpenFraction <= 1, "--open-fraction %v: want a number in (0, 1]", o.OpenFraction)
	check(o.OpenRate >= 0 && o.OpenRate <= 1e7, "--open-rate %v: want 0 to 1e7", o.OpenRate)
	check(o.OpenClients >= 1 && o.OpenClients <= 16384, "--open-clients %d: want 1 to 16384", o.OpenClients)
	check(o.RTT > 0 && o.RTT <= 10*time.Second, "--rtt %v: want more than 0 and at most 10s", o.RTT)
	check(o.Mode != modeRTT || len(o.RTTClients) > 0, "--rtt-clients: at least one client count")
	return errors.Join(errs...)
}
