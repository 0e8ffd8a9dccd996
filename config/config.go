// Package config turns a node's command line and environment into a
// validated Config, per SPEC §1: long kebab-case flags, each also readable
// from EDGEKV_<FLAG_IN_CAPS> (dashes become underscores), a flag given on the
// command line winning over its variable, and unknown EDGEKV_ variables
// ignored with a warning.
//
// It must never start anything, touch the data dir or the network, or
// return a Config that failed validation: a bad value is one error naming
// the flag (or variable) and the problem, so main can exit with one clear
// line instead of starting a half-working node.
//
// Flags join this package together with the feature that uses them (the
// batching, membership and tracing flags come with those features), so
// that --help never documents a knob that does nothing.
//
// A few flags are command-line only (commandLineOnly): one-shot switches
// such as --force-new-cluster must never be left on by an environment
// file that every restart reads again.
package config

import (
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// EnvPrefix starts every environment variable this package reads.
const EnvPrefix = "EDGEKV_"

// Member is one entry of --initial-cluster.
type Member struct {
	Name     string
	PeerAddr string
}

// Config is a validated node configuration.
type Config struct {
	Name            string
	DataDir         string
	ListenClient    string
	ListenPeer      string
	AdvertiseClient string
	AdvertisePeer   string
	// InitialCluster lists the bootstrap members in the order given; it
	// always contains this node under Name with AdvertisePeer.
	InitialCluster      []Member
	InitialClusterToken string
	// Join is the HTTP address (host:port) of a running member: a node
	// with a new data dir asks it to be added as a learner. Empty: none.
	Join string
	// ShutdownTimeout bounds a graceful stop (SIGTERM): past it the
	// process exits non-zero without waiting further.
	ShutdownTimeout time.Duration

	HeartbeatInterval time.Duration
	ElectionTimeout   time.Duration
	RequestTimeout    time.Duration

	QuotaBytes      int64
	MaxValueBytes   int64
	MaxRequestBytes int64
	MaxTxnOps       int

	Compression  string
	SnapshotKeep int
	// SnapshotEntries is how many applied log entries pass between two
	// snapshots (each one lets the log before it be dropped).
	SnapshotEntries uint64

	// ForceNewCluster starts a new single-voter cluster from this data dir
	// (disaster recovery after losing a quorum for good); command line only.
	ForceNewCluster bool

	// Batching and backpressure (batch package doc).
	MaxBatchBytes    int64
	MaxBatchDelay    time.Duration
	MaxPending       int
	MaxInflightBytes int64

	IdempotencyTTL     time.Duration
	IdempotencyMaxKeys int

	LogLevel  slog.Level
	LogFormat string

	// Contention profiles behind /debug/pprof/mutex and /debug/pprof/block.
	MutexProfileFraction int
	BlockProfileRate     time.Duration

	// Trace is --trace (off, ebpf).
	Trace TraceMode
}

// ErrHelp is returned when -h or --help was asked for; the usage text has
// already been written.
var ErrHelp = flag.ErrHelp

// maxKeyBytes is SPEC §2's key limit; a value limit below it is useless.
const maxKeyBytes = 4096

// MaxRequestBytesLimit bounds --max-request-bytes (and so the largest
// value): one request becomes one Raft entry, and an entry must fit one
// record of the peer protocol (wire.DefaultMaxRecordBytes, 64 MiB) with room
// for its key and encoding, or it could never be replicated.
const MaxRequestBytesLimit = 48 << 20

// Bounds of --snapshot-entries: below MinSnapshotEntries a busy node would
// spend its disk bandwidth rewriting the whole store; above
// MaxSnapshotEntries the log kept between snapshots (and replayed at a
// restart) is unreasonably long.
const (
	MinSnapshotEntries = 10
	MaxSnapshotEntries = 1 << 30
)

// commandLineOnly lists the flags that no environment variable sets.
var commandLineOnly = map[string]bool{"force-new-cluster": true}

// electionToHeartbeatMin: an election timeout shorter than this many
// heartbeats makes a single delayed heartbeat start an election (the same
// rule etcd applies).
const electionToHeartbeatMin = 5

// Bounds of the batching flags. MaxPendingLimit: the runtime keeps two
// request waiters per pending proposal (queued plus in flight) and the
// waiter table holds at most 2^20. MaxBatchBytesLimit: a batch never
// holds more than the 64 MiB of pending proposal bytes it is cut from.
// MaxBatchDelayLimit: holding a write longer than this is never a
// batching gain, only latency.
const (
	MaxPendingLimit       = 1 << 19
	MaxBatchBytesLimit    = 64 << 20
	MaxBatchDelayLimit    = time.Second
	MaxInflightBytesLimit = 1 << 30
)

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

var compressions = []string{"none", "snappy", "zstd", "auto"}

// Parse reads args (without the program name) and environ (KEY=VALUE
// pairs, as os.Environ returns) into a validated Config. Usage text for
// --help goes to usage. Warnings (unknown EDGEKV_ variables) are returned
// for the caller to log once a logger exists.
func Parse(args, environ []string, usage io.Writer) (Config, []string, error) {
	var cfg Config
	fs := flag.NewFlagSet("edgekv", flag.ContinueOnError)
	fs.SetOutput(usage)

	fs.StringVar(&cfg.Name, "name", "node1", "this node's unique name in the cluster")
	fs.StringVar(&cfg.DataDir, "data-dir", "./edgekv-data", "directory for the WAL, snapshots and metadata")
	fs.StringVar(&cfg.ListenClient, "listen-client", "127.0.0.1:7379", "HTTP address (host:port)")
	fs.StringVar(&cfg.ListenPeer, "listen-peer", "127.0.0.1:7380", "raw TCP address for peers (host:port)")
	fs.StringVar(&cfg.AdvertiseClient, "advertise-client", "", "client address told to other nodes and clients (default: --listen-client)")
	fs.StringVar(&cfg.AdvertisePeer, "advertise-peer", "", "peer address told to other nodes (default: --listen-peer)")
	initialCluster := fs.String("initial-cluster", "", "bootstrap members `n1=host:port,n2=host:port,...` (default: <name>=<advertise-peer>)")
	fs.StringVar(&cfg.InitialClusterToken, "initial-cluster-token", "edgekv", "the cluster id is derived from it: nodes of two clusters never talk")
	fs.StringVar(&cfg.Join, "join", "", "HTTP `host:port` of a running member: join its cluster as a learner (promoted once caught up); only for a new data dir")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 20*time.Second, "bound on a graceful stop (SIGTERM: hand over leadership, finish requests); past it the process exits non-zero (keep it below systemd's TimeoutStopSec)")

	fs.DurationVar(&cfg.HeartbeatInterval, "heartbeat-interval", 100*time.Millisecond, "leader heartbeat period; also the Raft tick")
	fs.DurationVar(&cfg.ElectionTimeout, "election-timeout", time.Second, "election timeout t, randomized in [t, 2t); at least 5 heartbeats")
	fs.DurationVar(&cfg.RequestTimeout, "request-timeout", 5*time.Second, "a write not committed by then gets 504, a read 503")

	quota := byteSize(2 << 30)
	maxValue := byteSize(1 << 20)
	maxRequest := byteSize(4 << 20)
	fs.Var(&quota, "quota-bytes", "`size` of the store; writes that would pass it get 507 (e.g. 2GiB)")
	fs.Var(&maxValue, "max-value-bytes", "values larger than this `size` get 413")
	fs.Var(&maxRequest, "max-request-bytes", "request bodies larger than this `size` get 413")
	fs.IntVar(&cfg.MaxTxnOps, "max-txn-ops", 10000, "batches (PutAll) with more ops get 413")

	maxBatch := byteSize(1 << 20)
	maxInflight := byteSize(8 << 20)
	fs.Var(&maxBatch, "max-batch-bytes", "upper bound on one proposal batch (`size`)")
	fs.DurationVar(&cfg.MaxBatchDelay, "max-batch-delay", 2*time.Millisecond, "upper bound on how long the batcher holds a write to grow a batch under load (never when idle; 0: never)")
	fs.IntVar(&cfg.MaxPending, "max-pending", 10000, "writes queued before new ones get 429 (also bounded by 64MiB of queued bytes); linearizable reads waiting for their read index are bounded alike (503)")
	fs.Var(&maxInflight, "max-inflight-bytes", "per-follower replication window (`size`); one larger entry always passes")

	fs.IntVar(&cfg.MutexProfileFraction, "mutex-profile-fraction", 100, "sample 1 in this many contended mutex events for /debug/pprof/mutex; 0: off")
	fs.DurationVar(&cfg.BlockProfileRate, "block-profile-rate", 0, "sample one blocking event per this much blocked time for /debug/pprof/block; 0: off (at 10µs it costs about 2% of the CPU under load: every waiting request is recorded)")

	fs.StringVar(&cfg.Compression, "compression", "auto", "replication and snapshot compression: none, snappy, zstd, auto")
	fs.Uint64Var(&cfg.SnapshotEntries, "snapshot-entries", 100000, "applied log entries between snapshots; the log before a snapshot is dropped")
	fs.IntVar(&cfg.SnapshotKeep, "snapshot-keep", 2, "snapshot files kept on disk")
	fs.BoolVar(&cfg.ForceNewCluster, "force-new-cluster", false,
		"DISASTER RECOVERY ONLY, when a quorum is lost for good: start a new cluster whose only voter is this node, "+
			"keeping everything in this data dir's log (committed entries and any later ones it holds, which become committed); "+
			"the other members are forgotten and must rejoin with wiped data dirs. Remove the flag after the first start")

	fs.DurationVar(&cfg.IdempotencyTTL, "idempotency-ttl", 10*time.Minute, "how long an Idempotency-Key is remembered")
	fs.IntVar(&cfg.IdempotencyMaxKeys, "idempotency-max-keys", 1000000, "bound on remembered idempotency keys; the oldest are forgotten first")

	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	fs.StringVar(&cfg.LogFormat, "log-format", "text", "text or json")
	fs.Var(&cfg.Trace, "trace", "`mode` of tracing attached at start: off, or ebpf (eBPF latency histograms of the write path, I/O syscalls and run queue on /metrics; needs kernel BTF and CAP_BPF+CAP_PERFMON, else the node logs what is missing and runs untraced)")

	fs.Usage = func() {
		printUsage(usage, fs)
	}

	if err := fs.Parse(args); err != nil {
		return Config{}, nil, err
	}
	if fs.NArg() > 0 {
		return Config{}, nil, fmt.Errorf("unexpected argument %q (flags start with --)", fs.Arg(0))
	}
	warnings, err := applyEnv(fs, environ)
	if err != nil {
		return Config{}, nil, err
	}

	cfg.QuotaBytes, cfg.MaxValueBytes, cfg.MaxRequestBytes = int64(quota), int64(maxValue), int64(maxRequest)
	cfg.MaxBatchBytes, cfg.MaxInflightBytes = int64(maxBatch), int64(maxInflight)
	if cfg.AdvertiseClient == "" {
		cfg.AdvertiseClient = cfg.ListenClient
	}
	if cfg.AdvertisePeer == "" {
		cfg.AdvertisePeer = cfg.ListenPeer
	}
	if cfg.LogLevel, err = parseLogLevel(*logLevel); err != nil {
		return Config{}, nil, err
	}
	if cfg.InitialCluster, err = parseInitialCluster(*initialCluster, cfg.Name, cfg.AdvertisePeer); err != nil {
		return Config{}, nil, err
	}
	cfg.Join = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(cfg.Join), "http://"), "/")
	if cfg.Join != "" && len(cfg.InitialCluster) > 1 {
		return Config{}, nil, errors.New("--join and --initial-cluster exclude each other: a joining node learns the members from the cluster")
	}
	if err := cfg.validate(); err != nil {
		return Config{}, nil, err
	}
	return cfg, warnings, nil
}

// printUsage documents every flag with its default and its variable.
func printUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: edgekv [flags]\n\nRuns a node. Every flag can also be set through its environment variable;\na flag on the command line wins.\n\nFlags:\n")
	fs.VisitAll(func(f *flag.Flag) {
		typeName, help := flag.UnquoteUsage(f)
		def := "default " + f.DefValue + ", "
		switch {
		case f.DefValue == "":
			def = "" // the help text says what an empty value means
		case typeName == "string":
			def = "default " + strconv.Quote(f.DefValue) + ", "
		}
		env := "env " + envName(f.Name)
		if commandLineOnly[f.Name] {
			env = "command line only"
		}
		fmt.Fprintf(w, "  --%s %s\n        %s\n        %s%s\n", f.Name, typeName, help, def, env)
	})
}

// envName maps a flag name to its environment variable.
func envName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// applyEnv sets every flag not given on the command line from its
// environment variable, and lists unknown EDGEKV_ variables as warnings.
func applyEnv(fs *flag.FlagSet, environ []string) ([]string, error) {
	setOnCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { setOnCommandLine[f.Name] = true })
	byEnv := map[string]*flag.Flag{}
	fs.VisitAll(func(f *flag.Flag) {
		if !commandLineOnly[f.Name] {
			byEnv[envName(f.Name)] = f
		}
	})

	var warnings []string
	for _, kv := range environ {
		key, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(key, EnvPrefix) {
			continue
		}
		f, known := byEnv[key]
		if !known && commandLineOnly[strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(key, EnvPrefix), "_", "-"))] {
			warnings = append(warnings, fmt.Sprintf("ignoring environment variable %s: that flag is command line only", key))
			continue
		}
		if !known {
			warnings = append(warnings, fmt.Sprintf("ignoring unknown environment variable %s", key))
			continue
		}
		if setOnCommandLine[f.Name] {
			continue
		}
		if err := fs.Set(f.Name, value); err != nil {
			return nil, fmt.Errorf("invalid value %q for %s: %w", value, key, err)
		}
	}
	sort.Strings(warnings)
	return warnings, nil
}

func parseLogLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
}

// parseInitialCluster reads "n1=host:port,n2=host:port". Empty means a
// single-node cluster of this node.
func parseInitialCluster(s, self, selfPeer string) ([]Member, error) {
	if strings.TrimSpace(s) == "" {
		return []Member{{Name: self, PeerAddr: selfPeer}}, nil
	}
	var members []Member
	seenName := map[string]bool{}
	seenAddr := map[string]bool{}
	foundSelf := false
	for _, part := range strings.Split(s, ",") {
		name, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || name == "" || addr == "" {
			return nil, fmt.Errorf("--initial-cluster: %q is not name=host:port", part)
		}
		if !namePattern.MatchString(name) {
			return nil, fmt.Errorf("--initial-cluster: bad member name %q (letters, digits, '.', '_', '-', at most 63)", name)
		}
		if err := checkHostPort(addr); err != nil {
			return nil, fmt.Errorf("--initial-cluster: member %s: %w", name, err)
		}
		if seenName[name] {
			return nil, fmt.Errorf("--initial-cluster: member name %q appears twice", name)
		}
		if seenAddr[addr] {
			return nil, fmt.Errorf("--initial-cluster: peer address %s appears twice", addr)
		}
		seenName[name], seenAddr[addr] = true, true
		if name == self {
			foundSelf = true
			if addr != selfPeer {
				return nil, fmt.Errorf("--initial-cluster: this node %q is listed at %s but --advertise-peer is %s", self, addr, selfPeer)
			}
		}
		members = append(members, Member{Name: name, PeerAddr: addr})
	}
	if !foundSelf {
		return nil, fmt.Errorf("--initial-cluster does not list this node (--name %q)", self)
	}
	return members, nil
}

func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if host == "" {
		return fmt.Errorf("address %q has no host", addr)
	}
	if p, err := net.LookupPort("tcp", port); err != nil || p == 0 {
		return fmt.Errorf("address %q: bad port", addr)
	}
	return nil
}

func (c *Config) validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(namePattern.MatchString(c.Name), "--name %q: letters, digits, '.', '_', '-', at most 63", c.Name)
	check(strings.TrimSpace(c.DataDir) != "", "--data-dir is empty")
	for _, a := range []struct{ flag, addr string }{
		{"--listen-client", c.ListenClient}, {"--listen-peer", c.ListenPeer},
		{"--advertise-client", c.AdvertiseClient}, {"--advertise-peer", c.AdvertisePeer},
	} {
		if err := checkHostPort(a.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.flag, err))
		}
	}
	check(c.ListenClient != c.ListenPeer, "--listen-client and --listen-peer are both %s", c.ListenClient)
	check(c.InitialClusterToken != "", "--initial-cluster-token is empty")
	check(c.HeartbeatInterval >= time.Millisecond, "--heartbeat-interval %v: at least 1ms", c.HeartbeatInterval)
	check(c.ElectionTimeout >= electionToHeartbeatMin*c.HeartbeatInterval,
		"--election-timeout %v must be at least %d times --heartbeat-interval %v", c.ElectionTimeout, electionToHeartbeatMin, c.HeartbeatInterval)
	check(c.RequestTimeout > 0, "--request-timeout %v: must be positive", c.RequestTimeout)
	check(c.ShutdownTimeout > 0, "--shutdown-timeout %v: must be positive", c.ShutdownTimeout)
	if c.Join != "" {
		if err := checkHostPort(c.Join); err != nil {
			errs = append(errs, fmt.Errorf("--join: %w", err))
		}
	}
	check(c.QuotaBytes > 0, "--quota-bytes must be positive")
	check(c.MaxValueBytes > 0, "--max-value-bytes must be positive")
	check(c.MaxRequestBytes <= MaxRequestBytesLimit,
		"--max-request-bytes %d is over %d: one request must fit one record of the peer protocol", c.MaxRequestBytes, MaxRequestBytesLimit)
	check(c.MaxRequestBytes >= c.MaxValueBytes+maxKeyBytes,
		"--max-request-bytes %d must hold at least one value of --max-value-bytes %d plus a key", c.MaxRequestBytes, c.MaxValueBytes)
	check(c.MaxTxnOps > 0, "--max-txn-ops must be positive")
	check(c.MaxBatchBytes >= 1 && c.MaxBatchBytes <= MaxBatchBytesLimit,
		"--max-batch-bytes %d: want 1 to %d (the pending-bytes bound)", c.MaxBatchBytes, MaxBatchBytesLimit)
	check(c.MaxBatchDelay >= 0 && c.MaxBatchDelay <= MaxBatchDelayLimit,
		"--max-batch-delay %v: want 0 to %v", c.MaxBatchDelay, MaxBatchDelayLimit)
	check(c.MaxBatchDelay < c.RequestTimeout,
		"--max-batch-delay %v must be shorter than --request-timeout %v", c.MaxBatchDelay, c.RequestTimeout)
	check(c.MutexProfileFraction >= 0, "--mutex-profile-fraction %d must not be negative", c.MutexProfileFraction)
	check(c.BlockProfileRate >= 0, "--block-profile-rate %v must not be negative", c.BlockProfileRate)
	check(c.MaxPending >= 1 && c.MaxPending <= MaxPendingLimit,
		"--max-pending %d: want 1 to %d", c.MaxPending, MaxPendingLimit)
	check(c.MaxInflightBytes >= 1 && c.MaxInflightBytes <= MaxInflightBytesLimit,
		"--max-inflight-bytes %d: want 1 to %d", c.MaxInflightBytes, MaxInflightBytesLimit)
	check(contains(compressions, c.Compression), "--compression %q: want one of %s", c.Compression, strings.Join(compressions, ", "))
	check(c.SnapshotKeep >= 1, "--snapshot-keep %d: at least 1", c.SnapshotKeep)
	check(c.SnapshotEntries >= MinSnapshotEntries && c.SnapshotEntries <= MaxSnapshotEntries,
		"--snapshot-entries %d: want %d to %d", c.SnapshotEntries, MinSnapshotEntries, MaxSnapshotEntries)
	check(c.IdempotencyTTL > 0, "--idempotency-ttl must be positive")
	check(c.IdempotencyMaxKeys > 0, "--idempotency-max-keys must be positive")
	check(c.LogFormat == "text" || c.LogFormat == "json", "--log-format %q: want text or json", c.LogFormat)
	return errors.Join(errs...)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// NewLogger builds the node's logger per --log-level and --log-format.
func (c *Config) NewLogger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// ClusterID derives the cluster id from --initial-cluster-token alone (SPEC
// §1: never from addresses, so moving a node does not change it), as its
// 64-bit FNV-1a hash. Zero is reserved for "unknown", so it maps to one.
func (c *Config) ClusterID() uint64 {
	h := fnv.New64a()
	h.Write([]byte(c.InitialClusterToken))
	if id := h.Sum64(); id != 0 {
		return id
	}
	return 1
}
