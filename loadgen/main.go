// Package loadgen is the load generator behind `edgekv bench`: it drives
// a running cluster over the HTTP API of SPEC §2 and reports throughput,
// latency percentiles and errors, as text or as JSON for comparison tools.
//
// Workloads: puts (PUT /v1/kv/<key>), gets (GET /v1/kv/<key>?consistency=
// linearizable|lease|stale), a mix of both, and PutAll batches (POST
// /v1/batch). Two ways to send:
//
//   - closed loop: C workers, each with its own connection, each sending
//     its next request when the previous one is answered;
//   - open loop (--rate): requests are due on a fixed timeline, whatever
//     the responses do; worker w owns slots w, w+C, w+2C, ... and latency
//     counts from each slot's due time, so a server stall shows up in the
//     latency of every request that should have left during it (no
//     coordinated omission). At most C requests are outstanding; what is
//     sent late or never is counted.
//
// Each worker records latency in its own HdrHistogram; they are merged
// when the workers have stopped, so the request path takes no shared lock
// and, in steady state, allocates nothing.
//
// It must never retry behind the caller's back (a retry hides an error and
// distorts latency), never let memory or outstanding requests grow with
// the run's length, and never report a figure it did not measure.
package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
)

// Main runs `edgekv bench` with args (the words after "bench"), writing
// the result to stdout and diagnostics to stderr, and returns the exit
// code: 0 on a completed run, 1 when the run failed or no request
// succeeded (the result is still printed), 2 for bad flags.
// SIGINT ends the run early and still prints what was measured.
func Main(args []string, stdout, stderr io.Writer) int {
	cfg, asJSON, err := ParseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "edgekv bench: %v\n", err)
		fmt.Fprintln(stderr, "run 'edgekv bench --help' for the flags")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "edgekv bench: %v\n", err)
		return 1
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(res)
	} else {
		err = res.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "edgekv bench: writing the result: %v\n", err)
		return 1
	}
	if res.Requests > 0 && res.OK == 0 {
		fmt.Fprintf(stderr, "edgekv bench: none of %d requests succeeded\n", res.Requests)
		return 1
	}
	return 0
}

// ParseFlags reads `edgekv bench` flags into a validated Config; asJSON
// reports --json. For --help it writes the usage text to usage and
// returns flag.ErrHelp.
func ParseFlags(args []string, usage io.Writer) (cfg Config, asJSON bool, err error) {
	cfg = DefaultConfig()
	fs := flag.NewFlagSet("edgekv bench", flag.ContinueOnError)
	// The flag package would print usage after every error; Main prints
	// one line instead, and the usage only for --help.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}

	endpoints := fs.String("endpoints", strings.Join(cfg.Endpoints, ","), "client addresses of the nodes, `host:port,...` (http:// allowed); connection i goes to address i mod n")
	fs.StringVar(&cfg.Workload, "workload", cfg.Workload, "put, get, mixed (gets and puts) or batch (PutAll)")
	fs.StringVar(&cfg.Consistency, "consistency", cfg.Consistency, "consistency of gets: linearizable, lease or stale")
	fs.Float64Var(&cfg.ReadFraction, "read-fraction", cfg.ReadFraction, "mixed: fraction of requests that are gets, in [0, 1]")
	fs.IntVar(&cfg.BatchSize, "batch-size", cfg.BatchSize, "batch: puts per PutAll request")
	fs.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "workers, each with its own connection; in open loop the most requests outstanding")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "requests per second on a fixed schedule (open loop), latency counted from each request's scheduled time; at most --concurrency outstanding, and what is not sent by the end of the schedule plus --timeout is skipped and counted. 0 for closed loop")
	fs.Uint64Var(&cfg.Requests, "requests", cfg.Requests, "measured requests; 0 for no count (then --duration ends the run)")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "measured time; 0 for no time limit. With --requests and no --duration, only the count ends the run")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "time spent running the workload before measuring")
	fs.BoolVar(&cfg.Preload, "preload", cfg.Preload, "write every key of the key space once before the warm-up, so gets find their keys")
	fs.IntVar(&cfg.ValueBytes, "value-size", cfg.ValueBytes, "value size in bytes")
	fs.Uint64Var(&cfg.KeySpace, "key-space", cfg.KeySpace, "number of distinct keys")
	fs.StringVar(&cfg.KeyPrefix, "key-prefix", cfg.KeyPrefix, "prefix of every key; keys are the prefix and a zero-padded number")
	fs.StringVar(&cfg.KeyOrder, "key-order", cfg.KeyOrder, "random (uniform, from --seed) or sequential")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of every key and value choice")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "bound on one request (dial, send, response); a request that passes it is a transport error")
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON instead of text")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(usage, fs)
		}
		return Config{}, false, err
	}
	if fs.NArg() > 0 {
		return Config{}, false, fmt.Errorf("unexpected argument %q (flags start with --)", fs.Arg(0))
	}
	durationSet := false
	fs.Visit(func(f *flag.Flag) { durationSet = durationSet || f.Name == "duration" })
	if cfg.Requests > 0 && !durationSet {
		cfg.Duration = 0 // the count alone ends the run
	}
	cfg.Endpoints = nil
	for _, e := range strings.Split(*endpoints, ",") {
		if strings.TrimSpace(e) == "" {
			continue
		}
		addr, err := normalizeEndpoint(e)
		if err != nil {
			return Config{}, false, fmt.Errorf("--endpoints: %w", err)
		}
		cfg.Endpoints = append(cfg.Endpoints, addr)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, false, err
	}
	return cfg, asJSON, nil
}

func printUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, `Usage: edgekv bench [flags]

Drives a running edgekv cluster over HTTP and reports throughput, latency
percentiles (of successful requests) and errors by HTTP status and by
transport failure. Closed loop by default; --rate selects open loop, where
latency counts from each request's scheduled time.

Flags:
`)
	fs.VisitAll(func(f *flag.Flag) {
		typeName, help := flag.UnquoteUsage(f)
		def := f.DefValue
		if typeName == "string" || f.Name == "endpoints" {
			def = strconv.Quote(def)
		}
		fmt.Fprintf(w, "  --%s\n        %s (default %s)\n", strings.TrimSpace(f.Name+" "+typeName), help, def)
	})
}
