package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/edgekv/edgekv/loadgen"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func TestEtcdLoadValidate(t *testing.T) {
	good := etcdLoad{Endpoints: []string{"127.0.0.1:1"}, Workload: loadgen.WorkloadBatch, Concurrency: 4, Conns: 2,
		Duration: time.Second, KeySpace: 1000, BatchSize: 100, ValueBytes: 256, Timeout: time.Second}
	if err := good.validate(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(c *etcdLoad){
		"workload":   func(c *etcdLoad) { c.Workload = "mixed" },
		"conns":      func(c *etcdLoad) { c.Conns = 5 },
		"no end":     func(c *etcdLoad) { c.Duration = 0 },
		"batch keys": func(c *etcdLoad) { c.KeySpace = 99 },
		"endpoints":  func(c *etcdLoad) { c.Endpoints = nil },
		"timeout":    func(c *etcdLoad) { c.Timeout = 0 },
	} {
		c := good
		mutate(&c)
		if err := c.validate(); err == nil {
			t.Errorf("%s: invalid config accepted", name)
		}
	}
}

// TestEtcdLoadKeysAndOpenLoop checks against a real etcd that the driver
// writes loadgen's key names (prefix + zero-padded index), and that open
// loop counts latency from the schedule: one worker asked for far more
// than one client can do falls behind, and its latency shows the backlog,
// not the service time.
func TestEtcdLoadKeysAndOpenLoop(t *testing.T) {
	bin := requireEtcd(t)
	o := tinyOptions(t, "--systems", "etcd")
	ctx := context.Background()
	s, err := startSession(ctx, o, sysEtcd, bin, t.TempDir(), 0, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.cl.stop()
	if err := s.preload(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: s.cl.clientEndpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := c.Get(ctx, keyPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 200 || string(resp.Kvs[0].Key) != "bench/000" || string(resp.Kvs[199].Key) != "bench/199" {
		t.Fatalf("preloaded %d keys, first %q", resp.Count, resp.Kvs[0].Key)
	}
	got, err := c.Get(ctx, "bench/042")
	if err != nil || len(got.Kvs) != 1 || len(got.Kvs[0].Value) != 256 {
		t.Fatalf("bench/042: %v %+v", err, got)
	}

	res, err := runEtcdLoad(ctx, etcdLoad{Endpoints: s.cl.clientEndpoints(), Workload: loadgen.WorkloadPut, Concurrency: 1, Conns: 1,
		Rate: 5000, Duration: 500 * time.Millisecond, KeySpace: 200, KeyPrefix: keyPrefix, ValueBytes: 256, Seed: 1, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ol := res.OpenLoop
	if res.Mode != "open" || ol == nil || ol.Scheduled != 2500 || ol.Late == 0 || ol.Skipped == 0 || ol.Sent+ol.Skipped != ol.Scheduled {
		t.Fatalf("open loop stats %+v (mode %s)", ol, res.Mode)
	}
	// The backlog grows to about a second (schedule end plus --timeout);
	// one etcd put takes milliseconds.
	if p99 := res.Latency["all"].P99Us; p99 < 300e3 {
		t.Fatalf("open-loop p99 %.1f ms: latency is not counted from the schedule", p99/1e3)
	}
	if !strings.Contains(res.Workload, "put") || res.Errors != 0 {
		t.Fatalf("result %+v", res)
	}
}
