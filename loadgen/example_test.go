package loadgen_test

import (
	"context"
	"fmt"
	"time"

	"github.com/edgekv/edgekv/loadgen"
)

// A comparison tool drives a run from Go and reads the Result (the same
// figures `edgekv bench --json` prints).
func ExampleRun() {
	cfg := loadgen.DefaultConfig()
	cfg.Endpoints = []string{"127.0.0.1:7379", "127.0.0.1:7389", "127.0.0.1:7399"}
	cfg.Workload = loadgen.WorkloadPut
	cfg.Concurrency = 64
	cfg.Duration, cfg.Warmup = 30*time.Second, 5*time.Second
	res, err := loadgen.Run(context.Background(), cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%.0f puts/s, p50 %.0f µs, p99 %.0f µs, generator %.1f µs CPU per request\n",
		res.OKPerSec, res.Latency["put"].P50Us, res.Latency["put"].P99Us, res.CPU.PerRequestUs)
}
