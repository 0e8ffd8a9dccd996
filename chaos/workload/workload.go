// Package workload is the client side of the fault tests: concurrent
// clients, spread over every node of a cluster, issue a random mix of
// edgekv requests over a few small key groups and record each in a
// chaos/history Recorder, with an outcome the checkers can trust.
//
// Requests: unconditional puts, If-Match compare-and-set puts,
// If-None-Match puts, linearizable and lease gets, deletes (with and
// without If-Match), PutAll batches over keys of one group (with
// conditions), lists and prefix deletes of a group. Every written value is
// unique in the run ("c<client>-<seq>"). Keys are "g<group>/k<index>":
// a group is one prefix, so batches and prefix ops stay inside one
// partition of the linearizability check and the check stays small.
//
// Outcomes follow history.OutcomeOf: a timeout, broken connection, 504 or
// a write's 503 is Unknown, never a failure.
//
// The package must never retry a write (a retried write could apply twice
// and would break value uniqueness), never record a stale read (stale
// reads are not linearizable by contract), and never send a request
// without a deadline.
package workload

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgekv/edgekv/chaos/history"
)

// maxBodyBytes bounds a response body read by a client: values are short
// and a list page of one group is small.
const maxBodyBytes = 1 << 20

// Config describes the clients.
type Config struct {
	// Addrs are the nodes' HTTP addresses; each client sends every
	// request to its home node (see home).
	Addrs   []string
	Clients int
	// Groups key groups of KeysPerGroup keys each.
	Groups       int
	KeysPerGroup int
	// Timeout bounds one write (set it above the nodes'
	// --request-timeout so that Unknown outcomes stay rare).
	Timeout time.Duration
	// ReadTimeout bounds one read (Timeout if 0). A read that times out
	// is dropped from the check, so a short one costs nothing and frees
	// the client: a client stuck on a paused node is back in time to read
	// from it right after it resumes, which is when a stale lease shows.
	ReadTimeout time.Duration
	// Readers: the last Readers clients only read (half of it lease
	// reads), with one reader per node as their home first.
	Readers int
	Seed    uint64
	// Rate, when > 0, caps each client's requests per second (a loaded
	// CI machine must keep some CPU for the nodes and the checker).
	Rate float64
	// UnavailableWriteIsUnknown records a write's 503 as Unknown, as
	// history.OutcomeOf does. By default it is Fail: the node answers 503
	// only when the write was refused before it reached any log (node
	// package doc), and taking that at its word keeps the check tractable
	// (every Unknown write is an Op porcupine may place anywhere later)
	// and checks the promise: a 503 write that took effect is reported.
	UnavailableWriteIsUnknown bool
	// OnAck, when set, is called by a client right after a write was
	// acknowledged (2xx), before anything else (nemesis.Acks.Acked).
	OnAck func()
}

// Keys lists every key of the workload.
func Keys(groups, perGroup int) []string {
	keys := make([]string, 0, groups*perGroup)
	for g := range groups {
		for k := range perGroup {
			keys = append(keys, keyName(g, k))
		}
	}
	return keys
}

func keyName(group, index int) string { return fmt.Sprintf("g%d/k%d", group, index) }

func groupPrefix(group int) string { return fmt.Sprintf("g%d/", group) }

// Run runs cfg.Clients clients until ctx ends, recording into rec, whose
// clients 0..cfg.Clients-1 it uses. It returns when every client stopped,
// with the answers that broke the API contract (SPEC §2) whatever the
// faults: a 500, a status the contract does not list, a malformed body.
// They are not linearizability violations but bugs all the same.
func Run(ctx context.Context, cfg Config, rec *history.Recorder) *Anomalies {
	anomalies := &Anomalies{}
	var wg sync.WaitGroup
	for i := range cfg.Clients {
		c := newClient(i, cfg, rec.Client(i), anomalies)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.close()
			c.run(ctx)
		}()
	}
	wg.Wait()
	return anomalies
}

// maxAnomaliesKept bounds the anomalies described; the rest are counted.
const maxAnomaliesKept = 20

// Anomalies collects answers that break the API contract.
type Anomalies struct {
	mu    sync.Mutex
	count int
	first []string
}

func (a *Anomalies) note(format string, args ...any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.count++
	if len(a.first) < maxAnomaliesKept {
		a.first = append(a.first, fmt.Sprintf(format, args...))
	}
}

// Count is how many anomalies were seen.
func (a *Anomalies) Count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.count
}

// String describes the first anomalies.
func (a *Anomalies) String() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return fmt.Sprintf("%d anomalies: %s", a.count, strings.Join(a.first, "; "))
}

// allowedStatus lists, per kind, the statuses SPEC §2 allows under faults.
func allowedStatus(kind history.Kind, status int) bool {
	switch status {
	case 200, 429, 503, 504:
		return true
	case 404:
		return kind == history.Get || kind == history.Delete
	case 412:
		return kind == history.Put || kind == history.Delete || kind == history.Batch
	}
	return false
}

// checkStatus notes an answer whose status the contract does not allow
// for this request (no answer at all is allowed: that is a fault).
func (c *client) checkStatus(kind history.Kind, node string, a answer) {
	if a.err == nil && !allowedStatus(kind, a.status) {
		c.anomalies.note("%s on %s: %d %s", kind, node, a.status, strings.TrimSpace(string(a.body)))
	}
}

// client is one sequential client: one request at a time.
type client struct {
	id   int
	cfg  Config
	log  *history.Client
	rng  *rand.Rand
	http *http.Client
	seq  int
	// revs is the last revision this client saw per key (0: absent or
	// unknown), so that its If-Match writes sometimes succeed.
	revs map[string]int64

	anomalies *Anomalies
	// refused is set when the last request's dial was refused or the node
	// answered 503 or 429 (it asks to retry later).
	refused bool
}

// refusedBackoff is the least a client waits after a refusal.
const refusedBackoff = 20 * time.Millisecond

func newClient(id int, cfg Config, log *history.Client, anomalies *Anomalies) *client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: cfg.Timeout}).DialContext,
		MaxIdleConnsPerHost: 1,
		DisableCompression:  true,
	}
	return &client{
		id: id, cfg: cfg, log: log,
		rng:  rand.New(rand.NewPCG(cfg.Seed, uint64(id)+1)),
		http: &http.Client{Transport: tr},
		revs: map[string]int64{}, anomalies: anomalies,
	}
}

func (c *client) close() { c.http.CloseIdleConnections() }

func (c *client) run(ctx context.Context) {
	var gap time.Duration
	if c.cfg.Rate > 0 {
		gap = time.Duration(float64(time.Second) / c.cfg.Rate)
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for ctx.Err() == nil {
		next := time.Now().Add(gap)
		c.refused = false
		c.one(ctx)
		if c.refused {
			// The node is down or busy: do not spin on refusals.
			next = time.Now().Add(max(gap, refusedBackoff))
		}
		if next.After(time.Now()) {
			timer.Reset(time.Until(next))
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		}
	}
}

func (c *client) value() string {
	c.seq++
	return fmt.Sprintf("c%d-%d", c.id, c.seq)
}

func (c *client) key(group int) string {
	return keyName(group, c.rng.IntN(c.cfg.KeysPerGroup))
}

// one issues one random request and records it.
func (c *client) one(ctx context.Context) {
	group := c.rng.IntN(c.cfg.Groups)
	key := c.key(group)
	// Always the client's home node, as a Jepsen client is bound to one
	// node: a node in trouble (paused, cut off) stalls only its own
	// clients while the others keep changing the data it may serve stale.
	// (A client that sometimes tried other nodes would soon be stuck on
	// the troubled one too, and the writes would stop.)
	node := c.cfg.Addrs[c.home()]
	if c.reader() {
		switch p := c.rng.IntN(100); {
		case p < 50:
			c.get(ctx, node, key, history.Lease)
		case p < 90:
			c.get(ctx, node, key, history.Linearizable)
		default:
			c.list(ctx, node, group)
		}
		return
	}
	switch p := c.rng.IntN(100); {
	case p < 22:
		c.put(ctx, node, key, history.Cond{})
	case p < 32:
		c.put(ctx, node, key, history.Cond{IfMatch: c.knownRev(key)})
	case p < 35:
		c.put(ctx, node, key, history.Cond{IfAbsent: true})
	case p < 57:
		c.get(ctx, node, key, history.Linearizable)
	case p < 67:
		c.get(ctx, node, key, history.Lease)
	case p < 71:
		c.del(ctx, node, key, history.Cond{})
	case p < 74:
		c.del(ctx, node, key, history.Cond{IfMatch: c.knownRev(key)})
	case p < 90:
		c.batch(ctx, node, group)
	case p < 98:
		c.list(ctx, node, group)
	default:
		c.deletePrefix(ctx, node, group)
	}
}

// reader reports whether this client only reads.
func (c *client) reader() bool { return c.id >= c.cfg.Clients-c.cfg.Readers }

// home is the index of the client's home node: readers take one node each
// first, the other clients spread over the nodes.
func (c *client) home() int {
	if c.reader() {
		return (c.id - (c.cfg.Clients - c.cfg.Readers)) % len(c.cfg.Addrs)
	}
	return c.id % len(c.cfg.Addrs)
}

// knownRev is the revision to put in an If-Match: the last one seen, or a
// made-up small one when none is known (then the write is expected to
// fail, which checks 412 too).
func (c *client) knownRev(key string) int64 {
	if r := c.revs[key]; r > 0 {
		return r
	}
	return 1 + c.rng.Int64N(3)
}

// answer is what came back from one HTTP exchange.
type answer struct {
	status int // 0: none (timeout, broken connection)
	header http.Header
	body   []byte
	err    error
}

func (c *client) do(ctx context.Context, method, node, target string, body []byte, headers ...string) answer {
	timeout := c.cfg.Timeout
	if method == "GET" && c.cfg.ReadTimeout > 0 {
		timeout = c.cfg.ReadTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+node+target, rd)
	if err != nil {
		return answer{err: err}
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.refused = c.refused || neverSent(err)
		return answer{err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests {
		c.refused = true
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes))
	if err != nil {
		// The status came, the body did not: for a write the outcome is
		// still unknown (a 200 without its revision is useless).
		return answer{err: fmt.Errorf("reading body of %d: %w", resp.StatusCode, err)}
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

// result fills the common output fields of an Op from an answer.
func (c *client) result(kind history.Kind, a answer) history.Op {
	res := history.Op{Code: a.status, Outcome: history.OutcomeOf(kind, a.status)}
	if a.err == nil && a.status == http.StatusServiceUnavailable && !c.cfg.UnavailableWriteIsUnknown {
		res.Outcome = history.Fail
	}
	if a.err != nil {
		res.Err = a.err.Error()
		if neverSent(a.err) {
			res.Outcome = history.Fail
		}
		return res
	}
	if a.status >= 300 && !(a.status == 404 && kind == history.Get) {
		res.Err = strings.TrimSpace(string(a.body))
	}
	res.StoreRev = headerInt(a.header, "X-Edgekv-Revision")
	return res
}

// neverSent reports whether err proves the request never left the
// client: the connection could not even be dialled (a killed node's port
// refuses). Anything later — a reset, a timeout — may come after the node
// read the request, so it stays Unknown.
func neverSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func headerInt(h http.Header, name string) int64 {
	v, err := strconv.ParseInt(strings.Trim(h.Get(name), `"`), 10, 64)
	if err != nil {
		return 0
	}
	return v
}

// writeResult decodes {"revision":N[,"deleted":n]} of a 200, or the
// "failed" list of a batch 412. A 200 whose body does not parse is
// Unknown: the write happened, its revision is not known, and the model
// needs the revision of an acknowledged change.
func (c *client) writeResult(kind history.Kind, node string, a answer) history.Op {
	return c.writeResultOf(kind, node, a, false)
}

// writeResultOf decodes a write's answer; mayChangeNothing says whether
// the write can be a no-op (a batch of deletes of absent keys), which on
// an empty store answers revision 0.
func (c *client) writeResultOf(kind history.Kind, node string, a answer, mayChangeNothing bool) history.Op {
	if a.err == nil && a.status/100 == 2 && c.cfg.OnAck != nil {
		c.cfg.OnAck()
	}
	res := c.result(kind, a)
	c.checkStatus(kind, node, a)
	if a.err != nil {
		return res
	}
	var body struct {
		Revision int64 `json:"revision"`
		Deleted  int   `json:"deleted"`
		Failed   []int `json:"failed"`
	}
	switch a.status {
	case http.StatusOK:
		if err := json.Unmarshal(a.body, &body); err != nil || body.Revision < 0 || body.Revision == 0 && !mayChangeNothing {
			res.Outcome, res.Err = history.Unknown, fmt.Sprintf("200 with a bad body %q: %v", a.body, err)
			c.anomalies.note("%s on %s: 200 with a bad body %q", kind, node, a.body)
			return res
		}
		res.Rev, res.Deleted = body.Revision, body.Deleted
	case http.StatusPreconditionFailed:
		if kind == history.Batch {
			if err := json.Unmarshal(a.body, &body); err == nil {
				res.Failed = body.Failed
			}
		}
	}
	return res
}

func condHeaders(cond history.Cond) []string {
	switch {
	case cond.IfMatch > 0:
		return []string{"If-Match", fmt.Sprintf("%q", strconv.FormatInt(cond.IfMatch, 10))}
	case cond.IfAbsent:
		return []string{"If-None-Match", "*"}
	}
	return nil
}

func keyPath(key string) string { return "/v1/kv/" + url.PathEscape(key) }

func (c *client) put(ctx context.Context, node, key string, cond history.Cond) {
	v := c.value()
	p := c.log.Invoke(history.Op{Kind: history.Put, Key: key, Value: v, Cond: cond, Node: node})
	res := c.writeResult(history.Put, node, c.do(ctx, "PUT", node, keyPath(key), []byte(v), condHeaders(cond)...))
	c.log.Complete(p, res)
	c.learn(key, res)
}

func (c *client) del(ctx context.Context, node, key string, cond history.Cond) {
	p := c.log.Invoke(history.Op{Kind: history.Delete, Key: key, Cond: cond, Node: node})
	res := c.writeResult(history.Delete, node, c.do(ctx, "DELETE", node, keyPath(key), nil, condHeaders(cond)...))
	c.log.Complete(p, res)
	if res.Outcome != history.Fail || res.Code == 404 {
		delete(c.revs, key)
	}
}

// learn remembers the revision a successful put returned.
func (c *client) learn(key string, res history.Op) {
	switch res.Outcome {
	case history.OK:
		c.revs[key] = res.Rev
	case history.Unknown:
		delete(c.revs, key)
	}
}

func (c *client) get(ctx context.Context, node, key, consistency string) {
	p := c.log.Invoke(history.Op{Kind: history.Get, Key: key, Consistency: consistency, Node: node})
	a := c.do(ctx, "GET", node, keyPath(key)+"?consistency="+consistency, nil)
	res := c.result(history.Get, a)
	c.checkStatus(history.Get, node, a)
	if a.err == nil {
		switch a.status {
		case http.StatusOK:
			res.Found, res.ReadValue = true, string(a.body)
			res.Rev = headerInt(a.header, "ETag")
			if res.Rev <= 0 {
				c.anomalies.note("GET %s on %s: 200 without an ETag", key, node)
			}
		case http.StatusNotFound:
			res.Found = false
		}
	}
	c.log.Complete(p, res)
	switch {
	case res.Outcome == history.OK && res.Found:
		c.revs[key] = res.Rev
	case res.Outcome == history.OK:
		delete(c.revs, key)
	}
}

type batchOpJSON struct {
	Op       string `json:"op"`
	Key      string `json:"key"`
	Value    string `json:"value,omitempty"`
	IfMatch  int64  `json:"if_match,omitempty"`
	IfAbsent bool   `json:"if_absent,omitempty"`
}

// batch writes 2 to KeysPerGroup distinct keys of one group atomically:
// mostly puts, sometimes a delete, sometimes with conditions.
func (c *client) batch(ctx context.Context, node string, group int) {
	n := 2 + c.rng.IntN(max(1, c.cfg.KeysPerGroup-1))
	n = min(n, c.cfg.KeysPerGroup)
	first := c.rng.IntN(c.cfg.KeysPerGroup)
	ops := make([]history.BatchOp, 0, n)
	wire := make([]batchOpJSON, 0, n)
	for i := range n {
		key := keyName(group, (first+i)%c.cfg.KeysPerGroup)
		op := history.BatchOp{Op: history.Put, Key: key}
		switch p := c.rng.IntN(100); {
		case p < 15:
			op.Op = history.Delete
		case p < 35:
			op.Cond.IfMatch = c.knownRev(key)
		case p < 40:
			op.Cond.IfAbsent = true
		}
		if op.Op == history.Put {
			op.Value = c.value()
		}
		ops = append(ops, op)
		w := batchOpJSON{Op: string(op.Op), Key: key, IfMatch: op.Cond.IfMatch, IfAbsent: op.Cond.IfAbsent}
		if op.Op == history.Put {
			w.Value = base64.StdEncoding.EncodeToString([]byte(op.Value))
		}
		wire = append(wire, w)
	}
	body, err := json.Marshal(struct {
		Ops []batchOpJSON `json:"ops"`
	}{wire})
	if err != nil {
		panic(fmt.Sprintf("workload: encode batch: %v", err)) // our own types: a bug
	}
	p := c.log.Invoke(history.Op{Kind: history.Batch, Ops: ops, Node: node})
	allDeletes := true
	for _, op := range ops {
		allDeletes = allDeletes && op.Op == history.Delete
	}
	res := c.writeResultOf(history.Batch, node, c.do(ctx, "POST", node, "/v1/batch", body, "Content-Type", "application/json"), allDeletes)
	c.log.Complete(p, res)
	for _, op := range ops {
		switch {
		case res.Outcome == history.OK && op.Op == history.Put:
			c.revs[op.Key] = res.Rev
		case res.Outcome != history.Fail:
			delete(c.revs, op.Key)
		}
	}
}

// list reads one page of a group: the whole group or, with a small limit,
// its first keys.
func (c *client) list(ctx context.Context, node string, group int) {
	limit := 0
	if c.rng.IntN(2) == 0 {
		limit = 1 + c.rng.IntN(c.cfg.KeysPerGroup)
	}
	prefix := groupPrefix(group)
	target := "/v1/kv?prefix=" + url.QueryEscape(prefix)
	if limit > 0 {
		target += "&limit=" + strconv.Itoa(limit)
	}
	p := c.log.Invoke(history.Op{Kind: history.List, Prefix: prefix, Limit: limit, Consistency: history.Linearizable, Node: node})
	a := c.do(ctx, "GET", node, target, nil)
	res := c.result(history.List, a)
	c.checkStatus(history.List, node, a)
	if a.err == nil && a.status == http.StatusOK {
		var page struct {
			Items []struct {
				Key      string `json:"key"`
				Value    []byte `json:"value"` // base64 in JSON
				Revision int64  `json:"revision"`
			} `json:"items"`
			More     bool  `json:"more"`
			Revision int64 `json:"revision"`
		}
		if err := json.Unmarshal(a.body, &page); err != nil {
			// A read has no effect: Unknown drops it from the check, and
			// the anomaly fails the run.
			res.Outcome, res.Err = history.Unknown, fmt.Sprintf("list body %q: %v", a.body, err)
			c.anomalies.note("GET %s on %s: bad list body %q: %v", target, node, a.body, err)
		} else {
			for _, it := range page.Items {
				res.Items = append(res.Items, history.Item{Key: it.Key, Value: string(it.Value), Rev: it.Revision})
			}
			res.More, res.StoreRev = page.More, page.Revision
		}
	}
	c.log.Complete(p, res)
}

func (c *client) deletePrefix(ctx context.Context, node string, group int) {
	prefix := groupPrefix(group)
	p := c.log.Invoke(history.Op{Kind: history.DeletePrefix, Prefix: prefix, Node: node})
	a := c.do(ctx, "DELETE", node, "/v1/kv?prefix="+url.QueryEscape(prefix), nil)
	res := c.result(history.DeletePrefix, a)
	c.checkStatus(history.DeletePrefix, node, a)
	if a.err == nil && a.status == http.StatusOK {
		var body struct {
			Revision int64 `json:"revision"`
			Deleted  int   `json:"deleted"`
		}
		if err := json.Unmarshal(a.body, &body); err != nil {
			res.Outcome, res.Err = history.Unknown, fmt.Sprintf("200 with a bad body %q: %v", a.body, err)
			c.anomalies.note("DELETE prefix %s on %s: 200 with a bad body %q", prefix, node, a.body)
		} else {
			res.Rev, res.Deleted = body.Revision, body.Deleted
		}
	}
	c.log.Complete(p, res)
	for k := range c.revs {
		if strings.HasPrefix(k, prefix) {
			delete(c.revs, k)
		}
	}
}

// FinalReads reads every key once with a linearizable Get, after the
// cluster was healed, for the durability check: it tries the nodes in turn
// until each key gets a definite answer (200 or 404), or ctx ends. Failed
// attempts are not recorded (a read has no effect); each successful read
// becomes an Op marked Final, timed on rec's clock, for client clientID.
// Append them to the history with AppendFinal.
func FinalReads(ctx context.Context, addrs, keys []string, timeout time.Duration, rec *history.Recorder, clientID int) ([]history.Op, error) {
	c := newClient(clientID, Config{Addrs: addrs, Timeout: timeout, Clients: 1, Groups: 1, KeysPerGroup: 1}, nil, &Anomalies{})
	defer c.close()
	retry := time.NewTicker(50 * time.Millisecond)
	defer retry.Stop()
	out := make([]history.Op, 0, len(keys))
	attempt := 0
	for _, key := range keys {
		for {
			node := addrs[attempt%len(addrs)]
			attempt++
			call := rec.Now()
			a := c.do(ctx, "GET", node, keyPath(key)+"?consistency="+history.Linearizable, nil)
			ret := rec.Now()
			if a.err == nil && (a.status == http.StatusOK || a.status == http.StatusNotFound) {
				op := history.Op{
					Kind: history.Get, Key: key, Consistency: history.Linearizable, Final: true,
					Node: node, Client: clientID, Call: call, Return: ret,
					Outcome: history.OK, Code: a.status, StoreRev: headerInt(a.header, "X-Edgekv-Revision"),
				}
				if a.status == http.StatusOK {
					op.Found, op.ReadValue, op.Rev = true, string(a.body), headerInt(a.header, "ETag")
				}
				out = append(out, op)
				break
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("workload: final read of %q: %w (last answer %d %v)", key, ctx.Err(), a.status, a.err)
			case <-retry.C:
			}
		}
	}
	return out, nil
}

// AppendFinal appends final reads to a history (they were called after
// every Op of h returned), giving them fresh IDs.
func AppendFinal(h history.History, finals []history.Op) history.History {
	next := 0
	for i := range h {
		next = max(next, h[i].ID+1)
	}
	for _, op := range finals {
		op.ID = next
		next++
		h = append(h, op)
	}
	return h
}
