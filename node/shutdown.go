package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/valyala/fasthttp"
)

// Graceful stop (SIGTERM). In order:
//
//  1. Drain: requests that arrive from now on get 503 with Retry-After
//     (clients retry elsewhere); /healthz, /metrics and GET /v1/cluster
//     still answer. Requests already being served go on.
//  2. A leader hands leadership to the most up-to-date active voter
//     (thesis §3.10) and waits until another member leads, so the cluster
//     does not wait an election timeout for a new leader. Writes this
//     member proposed before are committed by the new leader and still
//     answered here (the member keeps running Raft until step 4).
//  3. Wait until the requests being served have been answered.
//  4. Close: the HTTP server, the member (its persister stops after its
//     last Save, and every Save is durable when it returns: nothing
//     acknowledged or voted is left unsynced), the transport, the store.
//
// The whole stop is bounded by a timeout; past it GracefulStop returns an
// error and the caller exits non-zero without waiting further.

// drainAllowed are the paths still served while draining.
func drainAllowed(ctx *fasthttp.RequestCtx) bool {
	switch string(ctx.Path()) {
	case "/healthz", "/metrics":
		return true
	case "/v1/cluster":
		return ctx.IsGet() || ctx.IsHead()
	}
	return false
}

// drainMiddleware answers 503 while draining and counts the requests
// being served.
func (s *Server) drainMiddleware(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if s.draining.Load() && !drainAllowed(ctx) {
			ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, "1")
			ctx.SetConnectionClose()
			ctx.SetContentType("application/json")
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
			ctx.SetBodyString(`{"error":"this member is shutting down; retry on another member","code":"unavailable"}`)
			return
		}
		s.inflight.Add(1)
		defer s.inflight.Add(-1)
		next(ctx)
	}
}

// inflightPoll is how often a stop checks whether requests are answered.
const inflightPoll = 10 * time.Millisecond

// Drain refuses new requests (503) and waits up to timeout for the ones
// being served. It does not stop the server.
func (s *Server) Drain(timeout time.Duration) bool {
	s.draining.Store(true)
	return waitUntil(time.Now().Add(timeout), func() bool { return s.inflight.Load() == 0 })
}

// GracefulStop stops the server as described above within timeout. It
// returns an error when the stop did not complete in time or closing
// failed; the server is closed (or closing) either way.
func (s *Server) GracefulStop(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	s.draining.Store(true)
	var errs []error
	if s.node != nil && s.node.IsLeader() {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		start := time.Now()
		err := s.node.TransferLeadership(ctx, 0)
		cancel()
		if err != nil {
			// A single voter, or no voter reachable: stop anyway; the
			// others elect a leader after an election timeout.
			s.log.Warn("node: leadership not handed over before stopping", "err", err)
		} else {
			s.log.Info("node: leadership handed over", "to", s.node.memberName(s.node.Leader()), "took", time.Since(start))
		}
	}
	if !waitUntil(deadline, func() bool { return s.inflight.Load() == 0 }) {
		errs = append(errs, fmt.Errorf("%d requests still being served after %v", s.inflight.Load(), timeout))
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	timer := time.NewTimer(max(time.Until(deadline), time.Second))
	defer timer.Stop()
	select {
	case err := <-closed:
		errs = append(errs, err)
	case <-timer.C:
		errs = append(errs, fmt.Errorf("closing did not finish within %v", timeout))
	}
	return errors.Join(errs...)
}

// Removed is closed when this member was removed from the cluster.
func (s *Server) Removed() <-chan struct{} { return s.node.Removed() }

// waitUntil polls cond until it holds (true) or the deadline passes.
func waitUntil(deadline time.Time, cond func() bool) bool {
	tick := time.NewTicker(inflightPoll)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}
