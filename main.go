// Command edgekv runs one member of a replicated, strongly consistent
// key-value store (see the README). `edgekv` runs a node; `edgekv version`
// prints the version and build information; `edgekv bench` drives a running
// cluster over HTTP (package loadgen); `edgekv trace` prints live eBPF
// latency histograms of a running node (package ebpf); `edgekv restore`
// builds a new cluster's first data dir from a backup (GET /v1/snapshot).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/edgekv/edgekv/config"
	"github.com/edgekv/edgekv/ebpf"
	"github.com/edgekv/edgekv/loadgen"
	"github.com/edgekv/edgekv/node"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code.
func run(args, environ []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "version":
			if len(args) > 1 {
				fmt.Fprintf(stderr, "edgekv: version takes no arguments, got %q\n", args[1])
				return 1
			}
			printVersion(stdout)
			return 0
		case "bench":
			return loadgen.Main(args[1:], stdout, stderr)
		case "trace":
			return runTrace(args[1:], stdout, stderr)
		case "restore":
			return runRestore(args[1:], environ, stdout, stderr)
		}
	}
	cfg, warnings, err := config.Parse(args, environ, stderr)
	if errors.Is(err, config.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "edgekv: %s\n", oneLine(err))
		return 1
	}
	log := cfg.NewLogger(stderr)
	for _, w := range warnings {
		log.Warn(w)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	srv, err := node.Start(ctx, cfg, log)
	if err != nil {
		if ctx.Err() != nil {
			// Stopped by a signal while waiting for the other members.
			log.Info("edgekv: stopped before starting", "reason", oneLine(err))
			return 0
		}
		fmt.Fprintf(stderr, "edgekv: %s\n", oneLine(err))
		return 1
	}
	fmt.Fprintf(stdout, "edgekv: %s serving clients on http://%s, peers on %s, data in %s\n",
		cfg.Name, srv.ClientAddr, srv.PeerAddr, cfg.DataDir)
	return serve(srv, cfg, log, stderr)
}

// serve runs until a signal or the server stops. The first SIGINT or
// SIGTERM stops gracefully (node.Server.GracefulStop: a leader hands over
// leadership, requests being served finish, exit 0); a second signal, or
// the stop outlasting --shutdown-timeout, exits at once, non-zero.
func serve(srv *node.Server, cfg config.Config, log *slog.Logger, stderr io.Writer) int {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	select {
	case sig := <-sigs:
		log.Info("edgekv: stopping gracefully on a signal", "signal", sig.String(), "timeout", cfg.ShutdownTimeout)
		stopped := make(chan error, 1)
		go func() { stopped <- srv.GracefulStop(cfg.ShutdownTimeout) }()
		timer := time.NewTimer(cfg.ShutdownTimeout + time.Second)
		defer timer.Stop()
		select {
		case err := <-stopped:
			if err != nil {
				log.Error("edgekv: stopped, but not cleanly", "err", oneLine(err))
				return 1
			}
			log.Info("edgekv: stopped")
			return 0
		case sig := <-sigs:
			log.Error("edgekv: second signal: exiting without finishing the graceful stop", "signal", sig.String())
			return 2
		case <-timer.C:
			log.Error("edgekv: graceful stop timed out: exiting", "timeout", cfg.ShutdownTimeout)
			return 3
		}
	case <-srv.Removed():
		<-srv.Done()
		srv.Close()
		log.Warn("edgekv: this member was removed from the cluster; exiting (wipe the data dir before using it in a cluster again)")
		return 0
	case <-srv.Done():
		select {
		case <-srv.Removed():
			srv.Close()
			log.Warn("edgekv: this member was removed from the cluster; exiting (wipe the data dir before using it in a cluster again)")
			return 0
		default:
		}
		err := srv.Err()
		srv.Close()
		fmt.Fprintf(stderr, "edgekv: stopped: %s\n", oneLine(err))
		return 1
	}
}

// runTrace is `edgekv trace`: it stops on SIGINT or SIGTERM and exits
// non-zero with one line when the host cannot trace.
func runTrace(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := ebpf.RunTraceCommand(ctx, args, stdout, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "edgekv trace: %s\n", oneLine(err))
		return 1
	}
	return 0
}

// oneLine joins a multi-line error (errors.Join) into one line.
func oneLine(err error) string {
	if err == nil {
		return "unknown error"
	}
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

func printVersion(w io.Writer) {
	fmt.Fprintf(w, "edgekv %s\n", version)
	fmt.Fprintf(w, "go %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "-tags", "-ldflags", "CGO_ENABLED", "vcs.revision", "vcs.time", "vcs.modified", "-race":
			fmt.Fprintf(w, "%s=%s\n", s.Key, s.Value)
		}
	}
}

// runRestore is `edgekv restore --from FILE --data-dir DIR --name NAME
// [node flags]`: it builds the data dir of the first member of a new
// cluster holding the backup's data. The node flags are those of a node
// (--initial-cluster gives this member's peer address when it lists
// --name, --initial-cluster-token the new cluster's id); --data-dir and
// --name must be given, not defaulted.
func runRestore(args, environ []string, stdout, stderr io.Writer) int {
	var from string
	rest := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--from" || a == "-from":
			if i+1 == len(args) {
				fmt.Fprintln(stderr, "edgekv restore: --from needs a file")
				return 1
			}
			from = args[i+1]
			i++
		case strings.HasPrefix(a, "--from=") || strings.HasPrefix(a, "-from="):
			from = a[strings.IndexByte(a, '=')+1:]
		case a == "-h" || a == "--help" || a == "-help":
			fmt.Fprintln(stdout, "Usage: edgekv restore --from FILE --data-dir DIR --name NAME [--initial-cluster NAME=HOST:PORT,...] [--initial-cluster-token TOKEN] [node flags]\n\n"+
				"Builds DIR (which must not exist or be empty) as the data dir of the only voter of a NEW cluster\n"+
				"holding the data of FILE, a backup from GET /v1/snapshot (or a snapshot file of a data dir).\n"+
				"Start the node with the same --name and --data-dir; other members then join it (--join).")
			return 0
		default:
			rest = append(rest, a)
		}
	}
	if from == "" {
		fmt.Fprintln(stderr, "edgekv restore: --from FILE is required (a backup from GET /v1/snapshot)")
		return 1
	}
	for _, required := range []string{"data-dir", "name"} {
		if !flagGiven(rest, environ, required) {
			fmt.Fprintf(stderr, "edgekv restore: --%s is required\n", required)
			return 1
		}
	}
	cfg, warnings, err := config.Parse(rest, environ, stderr)
	if errors.Is(err, config.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "edgekv restore: %s\n", oneLine(err))
		return 1
	}
	log := cfg.NewLogger(stderr)
	for _, w := range warnings {
		log.Warn(w)
	}
	res, err := node.Restore(node.RestoreOptions{From: from, Node: cfg}, log)
	if err != nil {
		fmt.Fprintf(stderr, "edgekv restore: %s\n", oneLine(err))
		return 1
	}
	fmt.Fprintf(stdout, "edgekv restore: %s holds %d keys at revision %d (index %d) as member %s (id %016x) of a new cluster; start it with --name %s --data-dir %s\n",
		cfg.DataDir, res.Keys, res.Revision, res.Index, cfg.Name, uint64(res.MemberID), cfg.Name, cfg.DataDir)
	return 0
}

// flagGiven reports whether --name (or its variable) is set explicitly.
func flagGiven(args, environ []string, name string) bool {
	for _, a := range args {
		if a == "--"+name || a == "-"+name || strings.HasPrefix(a, "--"+name+"=") || strings.HasPrefix(a, "-"+name+"=") {
			return true
		}
	}
	env := config.EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "="
	for _, e := range environ {
		if strings.HasPrefix(e, env) {
			return true
		}
	}
	return false
}
