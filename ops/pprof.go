package ops

import (
	"net/http/pprof"
	"runtime"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
	"github.com/valyala/fasthttp/pprofhandler"
)

// PprofHandler serves /debug/pprof/ and every standard profile under it
// (index, cmdline, profile, symbol, trace, and the named runtime/pprof
// profiles: heap, allocs, goroutine, threadcreate, block, mutex). Mount it
// for every path starting with /debug/pprof/. Block and mutex profiles
// are empty until SetProfilingRates turns them on.
func PprofHandler(ctx *fasthttp.RequestCtx) {
	// fasthttp v1.74.0's pprofhandler answers 404 to every path ending in
	// a slash, the index /debug/pprof/ included, so the index is served
	// here and everything else is delegated.
	switch string(ctx.Path()) {
	case "/debug/pprof/":
		ctx.Response.Header.Set("Content-Type", "text/html; charset=utf-8")
		pprofIndex(ctx)
	case "/debug/pprof":
		ctx.Redirect("/debug/pprof/", fasthttp.StatusMovedPermanently)
	default:
		pprofhandler.PprofHandler(ctx)
	}
}

// pprofIndex is net/http/pprof's index page behind fasthttp's adaptor. It
// is set once at init and never changed.
var pprofIndex = fasthttpadaptor.NewFastHTTPHandlerFunc(pprof.Index)

// ProfilingRates configures the runtime's contention profiles.
type ProfilingRates struct {
	// MutexFraction: on average 1 in MutexFraction contended mutex events
	// is sampled for /debug/pprof/mutex; 0 turns it off. 100 costs little.
	MutexFraction int
	// BlockRateNanos: one blocking event per BlockRateNanos of blocked
	// time is sampled for /debug/pprof/block; 0 turns it off. Blocking
	// profiling is costlier than mutex profiling; 10000 (10µs) is a sane
	// production value.
	BlockRateNanos int
}

// SetProfilingRates applies r to the process and returns the mutex
// fraction that was in effect before (the runtime does not report the
// previous block rate). These are process-wide runtime settings: the
// runtime calls this once at start, before serving.
func SetProfilingRates(r ProfilingRates) (previousMutexFraction int) {
	previousMutexFraction = runtime.SetMutexProfileFraction(r.MutexFraction)
	runtime.SetBlockProfileRate(r.BlockRateNanos)
	return previousMutexFraction
}
