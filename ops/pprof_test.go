package ops

import (
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPprofHandler(t *testing.T) {
	prev := SetProfilingRates(ProfilingRates{MutexFraction: 1, BlockRateNanos: 1})
	defer SetProfilingRates(ProfilingRates{MutexFraction: prev, BlockRateNanos: 0})
	if got := runtime.SetMutexProfileFraction(-1); got != 1 {
		t.Fatalf("mutex fraction %d after SetProfilingRates, want 1", got)
	}
	get := func(target string) (int, string) {
		ctx := newCtx(t, "GET", target)
		PprofHandler(ctx)
		return ctx.Response.StatusCode(), string(ctx.Response.Body())
	}
	code, body := get("/debug/pprof/")
	if code != 200 {
		t.Fatalf("index: %d", code)
	}
	for _, p := range []string{"allocs", "block", "goroutine", "heap", "mutex", "threadcreate", "profile", "trace", "cmdline", "symbol"} {
		if !strings.Contains(body, p) {
			t.Errorf("index does not list %s", p)
		}
	}
	for _, p := range []string{"heap", "allocs", "goroutine", "threadcreate", "block", "mutex"} {
		code, body := get("/debug/pprof/" + p + "?debug=1")
		if code != 200 || len(body) == 0 {
			t.Errorf("%s: status %d, %d bytes", p, code, len(body))
		}
	}
	// Contend a mutex until the mutex profile shows it (a deadline, not a
	// fixed amount: contention needs the goroutines to actually overlap).
	deadline := time.Now().Add(10 * time.Second)
	for {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range 1000 {
					mu.Lock()
					runtime.Gosched()
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		_, body := get("/debug/pprof/mutex?debug=1")
		if strings.Contains(body, "sync.(*Mutex).Unlock") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mutex profile has no contention sample:\n%.500s", body)
		}
	}
	if code, body := get("/debug/pprof/cmdline"); code != 200 || body == "" {
		t.Errorf("cmdline: %d %q", code, body)
	}
	if code, _ := get("/debug/pprof/nonexistent"); code == 200 {
		t.Error("unknown profile served 200")
	}
}
