package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// benchResult is the part of `edgekv bench --json` these tests read.
type benchResult struct {
	Requests uint64 `json:"requests"`
	OK       uint64 `json:"ok"`
	Errors   uint64 `json:"errors"`
}

func runBench(t *testing.T, args ...string) benchResult {
	t.Helper()
	code, stdout, stderr := runOnce(t, append([]string{"bench", "--json", "--warmup", "0s", "--duration", "0"}, args...)...)
	if code != 0 {
		t.Fatalf("edgekv bench %v: exit %d\nstderr: %s\nstdout: %s", args, code, stderr, stdout)
	}
	var r benchResult
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("edgekv bench --json printed %q: %v", stdout, err)
	}
	return r
}

// `edgekv bench` drives a real node: every request of a fixed count
// succeeds, and the keys it wrote are in the store. The PutAll run uses a
// key space barely larger than a batch, so a batch naming a key twice
// (refused by the node with 400) would show as errors.
func TestBenchSubcommandAgainstRunningNode(t *testing.T) {
	p := start(t, nodeFlags(t, t.TempDir())...)
	p.waitReady()

	puts := runBench(t, "--endpoints", p.client, "--workload", "put", "--requests", "200", "--concurrency", "4", "--key-prefix", "bench/")
	if puts.Requests != 200 || puts.OK != 200 || puts.Errors != 0 {
		t.Fatalf("put run: %+v, want 200 requests, all ok", puts)
	}
	batches := runBench(t, "--endpoints", p.client, "--workload", "batch", "--batch-size", "10", "--key-space", "12",
		"--requests", "30", "--concurrency", "2", "--key-prefix", "batch/")
	if batches.OK != 30 || batches.Errors != 0 {
		t.Fatalf("batch run: %+v, want 30 PutAll requests, all ok", batches)
	}
	gets := runBench(t, "--endpoints", p.client, "--workload", "get", "--consistency", "linearizable", "--requests", "100",
		"--concurrency", "2", "--key-prefix", "bench/")
	if gets.OK != 100 || gets.Errors != 0 {
		t.Fatalf("get run: %+v, want 100 ok (found or not found)", gets)
	}

	var list struct {
		Items []json.RawMessage `json:"items"`
	}
	r := p.must(200, "GET", "/v1/kv?prefix=batch/&limit=1000", "")
	if err := json.Unmarshal([]byte(r.body), &list); err != nil || len(list.Items) != 12 {
		t.Fatalf("after the batch run the store holds %d of its 12 keys (%v): %s", len(list.Items), err, r.body)
	}
}

// `edgekv trace --pid` attaches to a live node and sees its fdatasyncs
// under writes. Where the host cannot trace it is skipped with the reason,
// except under REQUIRE_EBPF_TESTS=1 (CI as root), where it must work.
func TestTraceSubcommandOnLiveNode(t *testing.T) {
	if os.Geteuid() != 0 && os.Getenv("REQUIRE_EBPF_TESTS") != "1" {
		t.Skip("eBPF tracing needs root (or CAP_BPF and CAP_PERFMON); set REQUIRE_EBPF_TESTS=1 to fail instead")
	}
	p := start(t, nodeFlags(t, t.TempDir())...)
	p.waitReady()

	stop := make(chan struct{})
	var writers sync.WaitGroup
	writers.Add(1)
	go func() { // writes until the trace is done, so fdatasync runs
		defer writers.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			req, _ := http.NewRequest("PUT", "http://"+p.client+"/v1/kv/trace-"+strconv.Itoa(i), strings.NewReader("v"))
			if resp, err := httpClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}
	}()
	code, stdout, stderr := runOnce(t, "trace", "--pid", strconv.Itoa(p.cmd.Process.Pid), "--interval", "1s", "--count", "1")
	close(stop)
	writers.Wait()
	if code != 0 {
		t.Fatalf("edgekv trace: exit %d\nstderr: %s", code, stderr)
	}
	m := regexp.MustCompile(`syscall fdatasync: count (\d+)`).FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("edgekv trace printed no fdatasync histogram:\n%s", stdout)
	}
	if n, _ := strconv.Atoi(m[1]); n == 0 {
		t.Fatalf("edgekv trace saw no fdatasync of a node under writes:\n%s", stdout)
	}
}
