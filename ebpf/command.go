package ebpf

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"
)

// Bounds of `edgekv trace` flags.
const (
	minInterval = 10 * time.Millisecond
	maxInterval = time.Hour
)

// RunTraceCommand is the body of `edgekv trace --pid PID [--interval 1s]
// [--count N] [--binary PATH] [--cumulative]`: it attaches to the process,
// then every interval prints the histograms of what happened during the
// interval (or since attaching, with --cumulative), in the style of the
// classic biolatency tool, until ctx is done, --count intervals were
// printed or the process exits. args excludes the subcommand name.
//
// It returns nil on a normal end, flag.ErrHelp after printing usage for
// -h, and otherwise an error to print on one line before exiting non-zero
// (wrapping ErrUnavailable when the host cannot trace). Usage and flag
// errors go to stderr, histograms to stdout.
func RunTraceCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("edgekv trace", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pid := fs.Int("pid", 0, "process id of the edgekv node to trace (required)")
	interval := fs.Duration("interval", time.Second, "time between two printed histograms")
	count := fs.Int("count", 0, "number of intervals to print, 0 = until interrupted")
	binary := fs.String("binary", "", "binary holding the stage markers (default /proc/PID/exe)")
	cumulative := fs.Bool("cumulative", false, "print totals since attaching instead of per interval")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: edgekv trace --pid PID [--interval 1s] [--count N] [--binary PATH] [--cumulative]\n\n"+
			"Prints live latency histograms of a running node: write-path stages, I/O syscalls, run queue.\n"+
			"Needs kernel BTF and CAP_BPF + CAP_PERFMON (or root).\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case *pid <= 0:
		return errors.New("--pid is required and must be positive")
	case *interval < minInterval || *interval > maxInterval:
		return fmt.Errorf("--interval %v out of range [%v, %v]", *interval, minInterval, maxInterval)
	case *count < 0:
		return fmt.Errorf("--count %d must not be negative", *count)
	}

	tr, err := Attach(Options{PID: *pid, Executable: *binary})
	if err != nil {
		return err
	}
	defer tr.Close()
	fmt.Fprintf(stdout, "Tracing pid %d: write-path stages, I/O syscalls, run queue; every %v. Ctrl-C to stop.\n", *pid, *interval)

	var prev, cur Snapshot
	if err := tr.Snapshot(&prev); err != nil {
		return err
	}
	start := time.Now()
	ticker := time.NewTicker(*interval)
	defer ticker.Stop()
	for printed := 0; *count == 0 || printed < *count; printed++ {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		if err := tr.Snapshot(&cur); err != nil {
			return err
		}
		shown := cur
		header := fmt.Sprintf("\n%s  pid %d  last %v", time.Now().Format("15:04:05"), *pid, *interval)
		if *cumulative {
			header = fmt.Sprintf("\n%s  pid %d  since attach (%v)", time.Now().Format("15:04:05"), *pid, time.Since(start).Round(time.Millisecond))
		} else {
			shown = cur.Sub(&prev)
			prev = cur
		}
		if _, err := fmt.Fprintln(stdout, header); err != nil {
			return err
		}
		if err := shown.WriteText(stdout); err != nil {
			return err
		}
		if !processAlive(*pid) {
			return fmt.Errorf("pid %d exited", *pid)
		}
	}
	return nil
}

// processAlive reports whether pid exists and has not exited: a zombie
// (exited, not yet reaped by its parent) is not alive.
func processAlive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...; comm may contain spaces and parentheses.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return false
	}
	state := stat[i+2]
	return state != 'Z' && state != 'X' && state != 'x'
}
