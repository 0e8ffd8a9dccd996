package loadgen

import (
	"bytes"
	"encoding/json"
	"flag"
	"strings"
	"testing"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

func TestBadFlagsFailClearly(t *testing.T) {
	cases := []struct {
		args []string
		want string // in the error line
	}{
		{[]string{"--concurrency", "0"}, "--concurrency 0"},
		{[]string{"--concurrency", "20000"}, "--concurrency 20000"},
		{[]string{"--workload", "scan"}, `--workload "scan"`},
		{[]string{"--consistency", "eventual"}, `--consistency "eventual"`},
		{[]string{"--rate", "-5"}, "--rate -5"},
		{[]string{"--rate", "NaN"}, "--rate NaN"},
		{[]string{"--read-fraction", "1.5"}, "--read-fraction 1.5"},
		{[]string{"--batch-size", "0"}, "--batch-size 0"},
		{[]string{"--workload", "batch", "--batch-size", "20", "--key-space", "10"}, "--batch-size 20 is larger than --key-space 10"},
		{[]string{"--value-size", "-1"}, "--value-size -1"},
		{[]string{"--value-size", "1000000000"}, "--value-size 1000000000"},
		{[]string{"--key-space", "0"}, "at least one key"},
		{[]string{"--key-prefix", "\xff"}, "not valid UTF-8"},
		{[]string{"--key-prefix", strings.Repeat("k", 4095)}, "key limit"},
		{[]string{"--key-order", "zipf"}, `--key-order "zipf"`},
		{[]string{"--timeout", "0s"}, "--timeout 0s"},
		{[]string{"--duration", "0s"}, "set --requests or --duration"},
		{[]string{"--duration", "-1s"}, "--duration -1s"},
		{[]string{"--warmup", "-1s"}, "--warmup -1s"},
		{[]string{"--endpoints", "https://127.0.0.1:7379"}, "https is not supported"},
		{[]string{"--endpoints", "localhost"}, `address "localhost"`},
		{[]string{"--endpoints", ":7379"}, "has no host"},
		{[]string{"--endpoints", "127.0.0.1:0"}, "bad port"},
		{[]string{"--endpoints", ","}, "at least one address"},
		{[]string{"--batch-size", "100000", "--value-size", "16777216", "--workload", "batch"}, "over the"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
		{[]string{"--concurrency", "many"}, "many"},
		{[]string{"put"}, `unexpected argument "put"`},
	}
	for _, c := range cases {
		var stdout, stderr bytes.Buffer
		code := Main(c.args, &stdout, &stderr)
		if code != 2 {
			t.Errorf("Main(%q) = %d, want 2; stderr %q", c.args, code, stderr.String())
			continue
		}
		if !strings.Contains(stderr.String(), c.want) || !strings.HasPrefix(stderr.String(), "edgekv bench: ") {
			t.Errorf("Main(%q) stderr %q, want it to start with 'edgekv bench: ' and name %q", c.args, stderr.String(), c.want)
		}
		if stdout.Len() != 0 {
			t.Errorf("Main(%q) wrote to stdout: %q", c.args, stdout.String())
		}
	}
}

func TestHelpDocumentsEveryFlagWithDefault(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"--help"}, &stdout, &stderr); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	help := stderr.String()
	names := []string{"endpoints", "workload", "consistency", "read-fraction", "batch-size", "concurrency", "rate",
		"requests", "duration", "warmup", "preload", "value-size", "key-space", "key-prefix", "key-order", "seed",
		"timeout", "json"}
	lines := strings.Split(help, "\n")
	documented := 0
	for i, line := range lines {
		name, ok := strings.CutPrefix(line, "  --")
		if !ok {
			continue
		}
		name, _, _ = strings.Cut(name, " ")
		if strings.HasSuffix(line, " ") {
			t.Errorf("line %q ends in a space", line)
		}
		documented++
		if i+1 >= len(lines) || !strings.Contains(lines[i+1], "(default ") {
			t.Errorf("--%s documented without its default", name)
		}
	}
	for _, n := range names {
		if !strings.Contains(help, "  --"+n+" ") && !strings.Contains(help, "  --"+n+"\n") {
			t.Errorf("--help does not document --%s", n)
		}
	}
	if documented != len(names) {
		t.Errorf("--help documents %d flags, this test knows %d: update the test", documented, len(names))
	}
	if !strings.Contains(help, `--endpoints host:port,...`) || !strings.Contains(help, `(default "127.0.0.1:7379")`) {
		t.Errorf("--endpoints help:\n%s", help)
	}
}

func TestParseFlagsDefaultsAndCount(t *testing.T) {
	cfg, asJSON, err := ParseFlags(nil, &bytes.Buffer{})
	if err != nil || asJSON {
		t.Fatalf("ParseFlags(nil): %v, json %v", err, asJSON)
	}
	if cfg.Duration != 10*time.Second || cfg.Requests != 0 || cfg.Workload != WorkloadPut || cfg.Concurrency != 16 {
		t.Fatalf("defaults %+v", cfg)
	}
	// --requests alone: the count ends the run, not the default duration.
	cfg, _, err = ParseFlags([]string{"--requests", "5"}, &bytes.Buffer{})
	if err != nil || cfg.Duration != 0 || cfg.Requests != 5 {
		t.Fatalf("--requests 5: %v, duration %v", err, cfg.Duration)
	}
	cfg, _, err = ParseFlags([]string{"--requests", "5", "--duration", "3s", "--endpoints", "http://a:1/, b:2"}, &bytes.Buffer{})
	if err != nil || cfg.Duration != 3*time.Second || len(cfg.Endpoints) != 2 || cfg.Endpoints[0] != "a:1" || cfg.Endpoints[1] != "b:2" {
		t.Fatalf("%v, %+v", err, cfg)
	}
	if _, _, err := ParseFlags([]string{"-h"}, &bytes.Buffer{}); err != flag.ErrHelp {
		t.Fatalf("-h: %v", err)
	}
}

func TestMainPrintsTextAndJSON(t *testing.T) {
	f := startFake(t, fakeOptions{statusFor: func(n uint64) int {
		if n%4 == 1 {
			return 503
		}
		return 0
	}})
	args := []string{"--endpoints", f.addr, "--requests", "40", "--warmup", "0s", "--concurrency", "1", "--workload", "batch", "--batch-size", "5"}

	var stdout, stderr bytes.Buffer
	if code := Main(args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	text := stdout.String()
	for _, want := range []string{"batch (5 puts per PutAll), closed loop, 1 connections", "requests     40: 30 ok, 10 errors",
		"keys/s", "200: 30", "503: 10", "p99.9", "loadgen cpu"} {
		if !strings.Contains(text, want) {
			t.Errorf("text output lacks %q:\n%s", want, text)
		}
	}

	stdout.Reset()
	if code := Main(append(args, "--json"), &stdout, &stderr); code != 0 {
		t.Fatalf("--json exit %d: %s", code, stderr.String())
	}
	var res Result
	dec := json.NewDecoder(&stdout)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&res); err != nil {
		t.Fatalf("--json output does not decode: %v", err)
	}
	if res.Requests != 40 || res.OK != 30 || res.Statuses["503"] != 10 || res.BatchSize != 5 ||
		res.Latency["batch"].Count != 30 || res.KeysPerSec <= res.OKPerSec || res.CPU.UserSec+res.CPU.SystemSec <= 0 {
		t.Fatalf("decoded result %+v", res)
	}
	h, err := hdr.Decode([]byte(res.Histograms["batch"]))
	if err != nil {
		t.Fatalf("decoding the batch histogram: %v", err)
	}
	if h.TotalCount() != 30 || float64(h.ValueAtQuantile(99))/1e3 != res.Latency["batch"].P99Us {
		t.Fatalf("histogram holds %d values, p99 %dns; summary %+v", h.TotalCount(), h.ValueAtQuantile(99), res.Latency["batch"])
	}
}

func TestMainReportsRunFailure(t *testing.T) {
	// Preload against a dead endpoint fails the run: exit 1, one line.
	var stdout, stderr bytes.Buffer
	code := Main([]string{"--endpoints", deadAddr(t), "--preload", "--key-space", "3", "--requests", "1"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "preload: 3 of 3 puts failed") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}

func TestMainFailsWhenNothingSucceeds(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := Main([]string{"--endpoints", deadAddr(t), "--requests", "3", "--warmup", "0s", "--concurrency", "1"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "none of 3 requests succeeded") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "connection_refused") {
		t.Fatalf("the result is not printed:\n%s", stdout.String())
	}
}
