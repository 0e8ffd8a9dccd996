package config

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func mustParse(t *testing.T, args, env []string) (Config, []string) {
	t.Helper()
	cfg, warnings, err := Parse(args, env, &bytes.Buffer{})
	if err != nil {
		t.Fatalf("Parse(%q, %q): %v", args, env, err)
	}
	return cfg, warnings
}

func TestDefaultsMatchSpec(t *testing.T) {
	cfg, warnings := mustParse(t, nil, nil)
	if len(warnings) != 0 {
		t.Fatalf("warnings with no environment: %v", warnings)
	}
	want := Config{
		Name: "node1", DataDir: "./edgekv-data",
		ListenClient: "127.0.0.1:7379", ListenPeer: "127.0.0.1:7380",
		AdvertiseClient: "127.0.0.1:7379", AdvertisePeer: "127.0.0.1:7380",
		InitialClusterToken: "edgekv", ShutdownTimeout: 20 * time.Second,
		HeartbeatInterval: 100 * time.Millisecond, ElectionTimeout: time.Second, RequestTimeout: 5 * time.Second,
		QuotaBytes: 2 << 30, MaxValueBytes: 1 << 20, MaxRequestBytes: 4 << 20, MaxTxnOps: 10000,
		Compression: "auto", SnapshotKeep: 2, SnapshotEntries: 100000,
		MaxBatchBytes: 1 << 20, MaxBatchDelay: 2 * time.Millisecond, MaxPending: 10000, MaxInflightBytes: 8 << 20,
		IdempotencyTTL: 10 * time.Minute, IdempotencyMaxKeys: 1000000,
		LogFormat: "text", MutexProfileFraction: 100,
	}
	if len(cfg.InitialCluster) != 1 || cfg.InitialCluster[0] != (Member{"node1", "127.0.0.1:7380"}) {
		t.Fatalf("default initial cluster = %+v, want node1=127.0.0.1:7380", cfg.InitialCluster)
	}
	cfg.InitialCluster = nil
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("defaults:\n got %+v\nwant %+v", cfg, want)
	}
}

func TestEnvironmentAndPrecedence(t *testing.T) {
	env := []string{
		"EDGEKV_DATA_DIR=/var/lib/edgekv",
		"EDGEKV_QUOTA_BYTES=512MiB",
		"EDGEKV_NAME=from-env",
		"EDGEKV_NO_SUCH_FLAG=1",
		"PATH=/usr/bin",
	}
	cfg, warnings := mustParse(t, []string{"--name", "from-flag"}, env)
	if cfg.DataDir != "/var/lib/edgekv" || cfg.QuotaBytes != 512<<20 {
		t.Fatalf("environment not applied: data dir %q, quota %d", cfg.DataDir, cfg.QuotaBytes)
	}
	if cfg.Name != "from-flag" {
		t.Fatalf("command line must win over environment: name %q", cfg.Name)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "EDGEKV_NO_SUCH_FLAG") {
		t.Fatalf("warnings = %q, want one naming EDGEKV_NO_SUCH_FLAG", warnings)
	}
}

func TestInitialCluster(t *testing.T) {
	cfg, _ := mustParse(t, []string{
		"--name", "n2", "--listen-peer", "127.0.0.1:9002", "--listen-client", "127.0.0.1:8002",
		"--initial-cluster", "n1=127.0.0.1:9001, n2=127.0.0.1:9002,n3=127.0.0.1:9003",
	}, nil)
	want := []Member{{"n1", "127.0.0.1:9001"}, {"n2", "127.0.0.1:9002"}, {"n3", "127.0.0.1:9003"}}
	if len(cfg.InitialCluster) != len(want) {
		t.Fatalf("got %+v", cfg.InitialCluster)
	}
	for i := range want {
		if cfg.InitialCluster[i] != want[i] {
			t.Fatalf("member %d = %+v, want %+v", i, cfg.InitialCluster[i], want[i])
		}
	}
}

// Each bad input must fail with an error that names what is wrong, so the
// operator can fix it from one line.
func TestBadInputNamesTheProblem(t *testing.T) {
	cases := []struct {
		args    []string
		env     []string
		mention string
	}{
		{args: []string{"--no-such-flag"}, mention: "no-such-flag"},
		{args: []string{"extra"}, mention: `unexpected argument "extra"`},
		{args: []string{"--name", ""}, mention: "--name"},
		{args: []string{"--name", "bad name"}, mention: "--name"},
		{args: []string{"--listen-client", "nohost"}, mention: "--listen-client"},
		{args: []string{"--listen-peer", "127.0.0.1:99999"}, mention: "--listen-peer"},
		{args: []string{"--listen-peer", "127.0.0.1:7379"}, mention: "both 127.0.0.1:7379"},
		{args: []string{"--heartbeat-interval", "100ms", "--election-timeout", "300ms"}, mention: "--election-timeout"},
		{args: []string{"--heartbeat-interval", "soon"}, mention: "heartbeat-interval"},
		{args: []string{"--quota-bytes", "lots"}, mention: "quota-bytes"},
		{args: []string{"--quota-bytes", "-1"}, mention: "quota-bytes"},
		{args: []string{"--max-value-bytes", "8MiB"}, mention: "--max-request-bytes"},
		{args: []string{"--max-request-bytes", "49MiB"}, mention: "one record of the peer protocol"},
		{args: []string{"--compression", "lz4"}, mention: "--compression"},
		{args: []string{"--snapshot-keep", "0"}, mention: "--snapshot-keep"},
		{args: []string{"--snapshot-entries", "9"}, mention: "--snapshot-entries"},
		{args: []string{"--snapshot-entries", "1073741825"}, mention: "--snapshot-entries"},
		{args: []string{"--snapshot-entries", "-1"}, mention: "snapshot-entries"},
		{env: []string{"EDGEKV_SNAPSHOT_ENTRIES=often"}, mention: "EDGEKV_SNAPSHOT_ENTRIES"},
		{args: []string{"--force-new-cluster=maybe"}, mention: "force-new-cluster"},
		{args: []string{"--log-level", "loud"}, mention: "--log-level"},
		{args: []string{"--log-format", "xml"}, mention: "--log-format"},
		{args: []string{"--initial-cluster", "n1=127.0.0.1:9001"}, mention: "does not list this node"},
		{args: []string{"--initial-cluster", "node1=127.0.0.1:7380,node1=127.0.0.1:9"}, mention: "appears twice"},
		{args: []string{"--initial-cluster", "node1=127.0.0.1:7380,n2=127.0.0.1:7380"}, mention: "appears twice"},
		{args: []string{"--initial-cluster", "node1=127.0.0.1:9999"}, mention: "--advertise-peer"},
		{args: []string{"--initial-cluster", "node1"}, mention: "not name=host:port"},
		{args: []string{"--initial-cluster-token", ""}, mention: "--initial-cluster-token"},
		{env: []string{"EDGEKV_SNAPSHOT_KEEP=many"}, mention: "EDGEKV_SNAPSHOT_KEEP"},
		{args: []string{"--max-batch-bytes", "0"}, mention: "--max-batch-bytes"},
		{args: []string{"--max-batch-bytes", "65MiB"}, mention: "--max-batch-bytes"},
		{args: []string{"--max-batch-bytes", "big"}, mention: "max-batch-bytes"},
		{args: []string{"--max-batch-delay", "-1ms"}, mention: "--max-batch-delay"},
		{args: []string{"--max-batch-delay", "2s"}, mention: "--max-batch-delay"},
		{args: []string{"--max-batch-delay", "200ms", "--request-timeout", "100ms"}, mention: "shorter than --request-timeout"},
		{args: []string{"--max-pending", "0"}, mention: "--max-pending"},
		{args: []string{"--max-pending", "524289"}, mention: "--max-pending"},
		{args: []string{"--max-inflight-bytes", "0"}, mention: "--max-inflight-bytes"},
		{args: []string{"--max-inflight-bytes", "2GiB"}, mention: "--max-inflight-bytes"},
		{env: []string{"EDGEKV_MAX_PENDING=lots"}, mention: "EDGEKV_MAX_PENDING"},
	}
	for _, c := range cases {
		_, _, err := Parse(c.args, c.env, &bytes.Buffer{})
		if err == nil {
			t.Errorf("Parse(%q, %q) accepted bad input", c.args, c.env)
			continue
		}
		if !strings.Contains(err.Error(), c.mention) {
			t.Errorf("Parse(%q, %q) = %q, want it to mention %q", c.args, c.env, err, c.mention)
		}
	}
}

func TestHelpDocumentsEveryFlagWithDefault(t *testing.T) {
	var out bytes.Buffer
	_, _, err := Parse([]string{"--help"}, nil, &out)
	if !errors.Is(err, ErrHelp) {
		t.Fatalf("--help returned %v, want ErrHelp", err)
	}
	for _, want := range []string{
		"--name string", `default "node1", env EDGEKV_NAME`, "--data-dir", "env EDGEKV_DATA_DIR",
		"--listen-client", "--listen-peer", "--advertise-client", "--advertise-peer",
		"--initial-cluster", "--initial-cluster-token", "--heartbeat-interval", "default 100ms",
		"--election-timeout", "default 1s", "--request-timeout", "default 5s",
		"--quota-bytes", "default 2GiB", "--max-value-bytes", "default 1MiB",
		"--max-request-bytes", "default 4MiB", "--max-txn-ops", "default 10000",
		"--compression", `default "auto"`, "--quota-bytes size",
		"--snapshot-keep", "--snapshot-entries uint", "default 100000, env EDGEKV_SNAPSHOT_ENTRIES",
		"--force-new-cluster", "DISASTER RECOVERY", "command line only", "--idempotency-ttl", "default 10m0s", "--idempotency-max-keys",
		"--log-level", "--log-format", "env EDGEKV_LOG_FORMAT",
		"--max-batch-bytes size", "default 1MiB, env EDGEKV_MAX_BATCH_BYTES",
		"--max-batch-delay duration", "default 2ms, env EDGEKV_MAX_BATCH_DELAY",
		"--max-pending int", "default 10000, env EDGEKV_MAX_PENDING",
		"--max-inflight-bytes size", "default 8MiB, env EDGEKV_MAX_INFLIGHT_BYTES",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help output lacks %q", want)
		}
	}
}

func TestByteSize(t *testing.T) {
	good := map[string]int64{
		"0": 0, "1048576": 1 << 20, "512KiB": 512 << 10, "1MiB": 1 << 20, "2GiB": 2 << 30,
		"1TiB": 1 << 40, "4MB": 4e6, "10KB": 10e3, "7B": 7, "3 mib": 3 << 20,
	}
	for in, want := range good {
		var b byteSize
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, int64(b), err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-5", "1.5GiB", "9999999999TiB", "12XB"} {
		var b byteSize
		if err := b.Set(in); err == nil {
			t.Errorf("Set(%q) accepted, got %d", in, int64(b))
		}
	}
	for in, want := range map[int64]string{1 << 20: "1MiB", 2 << 30: "2GiB", 1000: "1000", 0: "0"} {
		b := byteSize(in)
		if got := b.String(); got != want {
			t.Errorf("String(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestClusterIDDependsOnTokenOnly(t *testing.T) {
	a, _ := mustParse(t, []string{"--initial-cluster-token", "alpha"}, nil)
	b, _ := mustParse(t, []string{"--initial-cluster-token", "alpha", "--listen-peer", "127.0.0.2:7380", "--name", "other"}, nil)
	c, _ := mustParse(t, []string{"--initial-cluster-token", "beta"}, nil)
	if a.ClusterID() == 0 || a.ClusterID() != b.ClusterID() {
		t.Fatalf("same token must give the same non-zero id: %x vs %x", a.ClusterID(), b.ClusterID())
	}
	if a.ClusterID() == c.ClusterID() {
		t.Fatalf("different tokens gave the same id %x", a.ClusterID())
	}
}

func TestJoin(t *testing.T) {
	cfg, _ := mustParse(t, []string{"--join", "http://10.0.0.1:7379/"}, nil)
	if cfg.Join != "10.0.0.1:7379" {
		t.Fatalf("--join = %q, want 10.0.0.1:7379", cfg.Join)
	}
	cfg, _ = mustParse(t, nil, []string{"EDGEKV_JOIN=10.0.0.2:7379"})
	if cfg.Join != "10.0.0.2:7379" {
		t.Fatalf("EDGEKV_JOIN: --join = %q", cfg.Join)
	}
	for _, args := range [][]string{
		{"--join", "nohost"},
		{"--join", "10.0.0.1:7379", "--initial-cluster", "node1=127.0.0.1:7380,n2=127.0.0.1:7381"},
		{"--shutdown-timeout", "0s"},
	} {
		if _, _, err := Parse(args, nil, &bytes.Buffer{}); err == nil {
			t.Errorf("%q: accepted", args)
		}
	}
}

func TestBatchingFlags(t *testing.T) {
	cfg, _ := mustParse(t, []string{"--max-batch-bytes", "256KiB", "--max-batch-delay", "0", "--max-pending", "64"},
		[]string{"EDGEKV_MAX_INFLIGHT_BYTES=1MiB", "EDGEKV_MAX_PENDING=99"})
	if cfg.MaxBatchBytes != 256<<10 || cfg.MaxBatchDelay != 0 || cfg.MaxPending != 64 || cfg.MaxInflightBytes != 1<<20 {
		t.Fatalf("batching flags: batch %d, delay %v, pending %d, inflight %d", cfg.MaxBatchBytes, cfg.MaxBatchDelay, cfg.MaxPending, cfg.MaxInflightBytes)
	}
	// The bounds themselves are accepted.
	cfg, _ = mustParse(t, []string{"--max-batch-bytes", "64MiB", "--max-batch-delay", "1s", "--max-pending", "524288", "--max-inflight-bytes", "1GiB"}, nil)
	if cfg.MaxBatchBytes != MaxBatchBytesLimit || cfg.MaxBatchDelay != MaxBatchDelayLimit || cfg.MaxPending != MaxPendingLimit || cfg.MaxInflightBytes != MaxInflightBytesLimit {
		t.Fatalf("limits not accepted: %+v", cfg)
	}
}

func TestSnapshotFlags(t *testing.T) {
	cfg, _ := mustParse(t, []string{"--snapshot-entries", "10"}, []string{"EDGEKV_SNAPSHOT_KEEP=3"})
	if cfg.SnapshotEntries != MinSnapshotEntries || cfg.SnapshotKeep != 3 || cfg.ForceNewCluster {
		t.Fatalf("snapshot flags: entries %d, keep %d, force %v", cfg.SnapshotEntries, cfg.SnapshotKeep, cfg.ForceNewCluster)
	}
	cfg, _ = mustParse(t, nil, []string{"EDGEKV_SNAPSHOT_ENTRIES=1073741824"})
	if cfg.SnapshotEntries != MaxSnapshotEntries {
		t.Fatalf("--snapshot-entries from the environment: %d", cfg.SnapshotEntries)
	}
	cfg, _ = mustParse(t, []string{"--force-new-cluster"}, nil)
	if !cfg.ForceNewCluster {
		t.Fatal("--force-new-cluster not set")
	}
}

// TestForceNewClusterIsCommandLineOnly: an env file read at every restart
// must never keep a one-shot recovery switch on.
func TestForceNewClusterIsCommandLineOnly(t *testing.T) {
	cfg, warnings := mustParse(t, nil, []string{"EDGEKV_FORCE_NEW_CLUSTER=true"})
	if cfg.ForceNewCluster {
		t.Fatal("EDGEKV_FORCE_NEW_CLUSTER set --force-new-cluster")
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "EDGEKV_FORCE_NEW_CLUSTER") || !strings.Contains(warnings[0], "command line only") {
		t.Fatalf("warnings %q, want one naming EDGEKV_FORCE_NEW_CLUSTER as command line only", warnings)
	}
}
