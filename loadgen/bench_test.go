package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// startFakeProcess runs a trivial fake server in a child process (this
// test binary, see TestMain), so that getrusage of the benchmark's own
// process measures the generator alone. It returns the server's address.
func startFakeProcess(tb testing.TB) string {
	tb.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), fakeServerEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting the fake server process: %v", err)
	}
	tb.Cleanup(func() {
		stdin.Close() // the child exits when its stdin closes
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill() // our own child, by its handle
			<-done
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		tb.Fatalf("reading the fake server's address: %v", err)
	}
	return strings.TrimSpace(line)
}

// BenchmarkGenerator measures the generator's own cost per request
// against a trivial fake server in another process: ns/op is wall time
// (the server's and the loopback's included), cpu-ns/op the generator
// process's CPU time (getrusage), allocs/op its allocations, per request.
func BenchmarkGenerator(b *testing.B) {
	addr := startFakeProcess(b)
	cases := []struct {
		name string
		set  func(*Config)
	}{
		{"put/c1", func(c *Config) { c.Concurrency = 1 }},
		{"put/c16", func(c *Config) { c.Concurrency = 16 }},
		{"get/c16", func(c *Config) { c.Concurrency, c.Workload = 16, WorkloadGet }},
		{"mixed/c16", func(c *Config) { c.Concurrency, c.Workload = 16, WorkloadMixed }},
		{"batch100/c4", func(c *Config) { c.Concurrency, c.Workload, c.BatchSize = 4, WorkloadBatch, 100 }},
		// Open loop at a rate the fake keeps up with: ns/op is the
		// schedule's period; cpu-ns/op is the cost, timer included.
		{"open-put-20k/c16", func(c *Config) { c.Concurrency, c.Rate = 16, 20000 }},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			cfg := testConfig(uint64(b.N), addr)
			c.set(&cfg)
			b.ReportAllocs()
			b.ResetTimer()
			res, err := Run(context.Background(), cfg)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			if res.OK != uint64(b.N) {
				b.Fatalf("%d of %d requests ok: %+v %+v", res.OK, b.N, res.Statuses, res.TransportErrors)
			}
			b.ReportMetric((res.CPU.UserSec+res.CPU.SystemSec)*1e9/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkClientCost compares the CPU a client spends per request for
// the same exchange (PUT of 256 bytes, 16 concurrent connections, server
// in another process): our own connection driving fasthttp's
// Request.Write and Response.Read (what the generator uses), fasthttp's
// HostClient, and net/http. It is the measurement behind that choice.
func BenchmarkClientCost(b *testing.B) {
	addr := startFakeProcess(b)
	value := bytes.Repeat([]byte{'v'}, 256)
	const conns = 16

	measure := func(b *testing.B, perConn func(i int) func() error) {
		b.ReportAllocs()
		before, err := processCPU()
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		var wg sync.WaitGroup
		errs := make(chan error, conns)
		for i := range conns {
			do := perConn(i)
			n := b.N / conns
			if i < b.N%conns {
				n++
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range n {
					if err := do(); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		b.StopTimer()
		after, _ := processCPU()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		used := after.sub(before)
		b.ReportMetric(float64((used.user+used.system).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}

	b.Run("owned-conn", func(b *testing.B) {
		measure(b, func(i int) func() error {
			c := newConn(addr, responseBodyBytes(256))
			var req fasthttp.Request
			var resp fasthttp.Response
			req.Header.SetHost(addr)
			req.Header.SetMethod(fasthttp.MethodPut)
			req.Header.SetContentType("application/octet-stream")
			uri := []byte(fmt.Sprintf("/v1/kv/bench%%2F%06d", i))
			return func() error {
				req.Header.SetRequestURIBytes(uri)
				req.SetBodyRaw(value)
				if _, err := c.roundTrip(&req, &resp, time.Now().Add(5*time.Second)); err != nil {
					return err
				}
				if resp.StatusCode() != 200 {
					return fmt.Errorf("status %d", resp.StatusCode())
				}
				return nil
			}
		})
	})
	b.Run("fasthttp-hostclient", func(b *testing.B) {
		hc := &fasthttp.HostClient{Addr: addr, MaxConns: conns, DisablePathNormalizing: true, MaxIdemponentCallAttempts: 1}
		measure(b, func(i int) func() error {
			var req fasthttp.Request
			var resp fasthttp.Response
			uri := fmt.Sprintf("http://%s/v1/kv/bench%%2F%06d", addr, i)
			return func() error {
				req.SetRequestURI(uri)
				req.Header.SetMethod(fasthttp.MethodPut)
				req.Header.SetContentType("application/octet-stream")
				req.SetBodyRaw(value)
				if err := hc.DoTimeout(&req, &resp, 5*time.Second); err != nil {
					return err
				}
				if resp.StatusCode() != 200 {
					return fmt.Errorf("status %d", resp.StatusCode())
				}
				return nil
			}
		})
		hc.CloseIdleConnections()
	})
	// Pipelining: the 16 callers share 2 connections, several requests in
	// flight on each, so writes and reads carry several at a time.
	b.Run("fasthttp-pipelineclient-2conns", func(b *testing.B) {
		pc := &fasthttp.PipelineClient{Addr: addr, MaxConns: 2, MaxPendingRequests: 1024, DisablePathNormalizing: true}
		measure(b, func(i int) func() error {
			var req fasthttp.Request
			var resp fasthttp.Response
			uri := fmt.Sprintf("http://%s/v1/kv/bench%%2F%06d", addr, i)
			return func() error {
				req.SetRequestURI(uri)
				req.Header.SetMethod(fasthttp.MethodPut)
				req.Header.SetContentType("application/octet-stream")
				req.SetBodyRaw(value)
				if err := pc.DoTimeout(&req, &resp, 5*time.Second); err != nil {
					return err
				}
				if resp.StatusCode() != 200 {
					return fmt.Errorf("status %d", resp.StatusCode())
				}
				return nil
			}
		})
	})
	b.Run("net-http", func(b *testing.B) {
		tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true}
		client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		measure(b, func(i int) func() error {
			uri := fmt.Sprintf("http://%s/v1/kv/bench%%2F%06d", addr, i)
			return func() error {
				req, err := http.NewRequest(http.MethodPut, uri, bytes.NewReader(value))
				if err != nil {
					return err
				}
				req.Header.Set("Content-Type", "application/octet-stream")
				resp, err := client.Do(req)
				if err != nil {
					return err
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil {
					return err
				}
				if resp.StatusCode != 200 {
					return fmt.Errorf("status %d", resp.StatusCode)
				}
				return nil
			}
		})
		tr.CloseIdleConnections()
	})
}
