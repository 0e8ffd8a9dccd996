package ops

import (
	"time"

	"github.com/valyala/fasthttp"
)

// Middleware wraps the node's fasthttp handler: it classifies each request
// from its raw request line (ClassifyRequest), counts it by endpoint and
// status and records its latency. Per request it does two clock reads and
// a few atomic adds; it allocates nothing and looks nothing up.
//
// The latency is the handler's time until the response is ready, not the
// time to write it to the client (fasthttp writes after the handler
// returns). A streamed body (SetBodyStreamWriter, used by GET
// /v1/snapshot) is therefore counted when streaming starts.
func (m *Metrics) Middleware(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		e := ClassifyRequest(ctx.Method(), ctx.Request.Header.RequestURI())
		m.inflight.Add(1)
		start := time.Now()
		next(ctx)
		m.ObserveRequest(e, ctx.Response.StatusCode(), int64(time.Since(start)))
		m.inflight.Add(-1)
	}
}
