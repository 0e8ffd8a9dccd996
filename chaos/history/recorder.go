package history

import (
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"time"
)

// Recorder hands one Client to each client goroutine and merges their
// buffers at the end. Its clock is monotonic (time.Since of a start time
// read with Go's monotonic reading), so call and return times of all
// clients are comparable.
type Recorder struct {
	start   time.Time
	clients []Client
	merged  atomic.Bool
}

// NewRecorder makes a Recorder for nClients clients, each expected to
// record about opsPerClient ops (a hint, not a bound).
func NewRecorder(nClients, opsPerClient int) *Recorder {
	r := &Recorder{start: time.Now(), clients: make([]Client, nClients)}
	for i := range r.clients {
		r.clients[i] = Client{rec: r, id: i, ops: make([]Op, 0, opsPerClient)}
	}
	return r
}

// Now is the Recorder's clock: nanoseconds since it was made.
func (r *Recorder) Now() int64 { return int64(time.Since(r.start)) }

// Client returns client i's log. It must be used by one goroutine only.
func (r *Recorder) Client(i int) *Client { return &r.clients[i] }

// History merges every client's buffer, sorted by call time, and assigns
// IDs. Ops invoked but never completed are Unknown (the client died or gave
// up). Call it once, after every client goroutine has stopped; a second call
// panics (the buffers have been handed over).
func (r *Recorder) History() History {
	if r.merged.Swap(true) {
		panic("history: Recorder.History called twice")
	}
	end := r.Now()
	var n int
	for i := range r.clients {
		n += len(r.clients[i].ops)
	}
	h := make(History, 0, n)
	for i := range r.clients {
		c := &r.clients[i]
		for j := range c.ops {
			if c.ops[j].Outcome == "" {
				c.ops[j].Outcome = Unknown
				c.ops[j].Return = end
				c.ops[j].Err = "never completed"
			}
		}
		h = append(h, c.ops...)
		c.ops = nil
	}
	slices.SortStableFunc(h, func(a, b Op) int {
		if a.Call != b.Call {
			if a.Call < b.Call {
				return -1
			}
			return 1
		}
		return a.Client - b.Client
	})
	for i := range h {
		h[i].ID = i
	}
	return h
}

// Client is one client goroutine's log. Not safe for concurrent use: that
// is the point (no lock on the hot path).
type Client struct {
	rec *Recorder
	id  int
	ops []Op
}

// Pending names an Op that has been invoked and not yet completed.
type Pending int

// Invoke records the call of op now and returns its handle. The Op's
// input fields (Kind, Key, Value, Cond, Ops...) must be set; Client, Call
// and the output are filled here and by Complete.
func (c *Client) Invoke(op Op) Pending {
	op.Client = c.id
	op.Outcome = ""
	op.Call = c.rec.Now()
	c.ops = append(c.ops, op)
	return Pending(len(c.ops) - 1)
}

// Complete records the return of p now with what came back: res's output
// fields (Outcome, Code, Rev, StoreRev, Found, ReadValue, Items, More,
// Failed, Deleted, Err) are copied; its input fields are ignored.
func (c *Client) Complete(p Pending, res Op) {
	now := c.rec.Now()
	o := &c.ops[p]
	if o.Outcome != "" {
		panic(fmt.Sprintf("history: op %d of client %d completed twice", p, c.id))
	}
	o.Return = now
	o.Outcome = res.Outcome
	o.Code = res.Code
	o.Rev = res.Rev
	o.StoreRev = res.StoreRev
	o.Found = res.Found
	o.ReadValue = res.ReadValue
	o.Items = res.Items
	o.More = res.More
	o.Failed = res.Failed
	o.Deleted = res.Deleted
	o.Err = res.Err
	if o.Outcome == "" {
		o.Outcome = Unknown
	}
}

// OutcomeOf classifies an HTTP answer to an Op of kind k (status 0: no
// answer — timeout or broken connection).
//
//   - 2xx is OK; a Get's 404 is OK too (a read of absence).
//   - 400, 404, 409, 412, 413, 429 and 507 are Fail: the request had no
//     effect. 429 is refused before it is queued (SPEC §2).
//   - A read's 503 is Fail (a read has no effect anyway).
//   - Everything else is Unknown, including a write's 503: a write
//     forwarded by a follower may have reached the leader's log before the
//     follower gave up, so 503 does not prove it had no effect. 504, 500
//     and no answer are Unknown (SPEC §3).
func OutcomeOf(k Kind, status int) Outcome {
	write := k == Put || k == Delete || k == Batch || k == DeletePrefix
	switch {
	case status >= 200 && status < 300:
		return OK
	case status == http.StatusNotFound && (k == Get || k == List):
		return OK
	case status == http.StatusBadRequest, status == http.StatusNotFound,
		status == http.StatusConflict, status == http.StatusPreconditionFailed,
		status == http.StatusRequestEntityTooLarge, status == http.StatusTooManyRequests,
		status == http.StatusInsufficientStorage:
		return Fail
	case status == http.StatusServiceUnavailable && !write:
		return Fail
	}
	return Unknown
}
