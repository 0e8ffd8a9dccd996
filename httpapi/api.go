package httpapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
)

// API serves the key-value endpoints of SPEC §2 on top of a Backend.
// Create it with New; register extra routes with Handle and HandlePrefix
// before serving; serve with Server() (or Handler() inside another server
// configured the same way).
type API struct {
	cfg     Config
	backend Backend
	log     *slog.Logger
	server  *fasthttp.Server

	// scratch holds per-request buffers so that the hot paths allocate
	// nothing in steady state; one *scratch serves one request at a time.
	scratch sync.Pool

	// Extra routes (later issues: /v1/cluster, /metrics, /v1/snapshot,
	// /debug/pprof/). Written only before serving, read-only after.
	exact    map[string]fasthttp.RequestHandler
	prefixes []prefixRoute

	// Canonical response header names as bytes, for SetCanonical (which
	// skips fasthttp's per-call key normalization). Never modified.
	hdrRevision []byte
	hdrETag     []byte
}

type prefixRoute struct {
	prefix  string
	handler fasthttp.RequestHandler
}

// scratch is the per-request working memory.
type scratch struct {
	key    []byte
	prefix []byte
	after  []byte
	num    []byte
	body   []byte
	ops    []BatchOp
	fp     fingerprinter
}

// scratchRetainBytes bounds what a pooled scratch keeps between requests:
// a buffer grown past it by one large request is dropped, not pooled.
const scratchRetainBytes = 64 << 10

// listFlushBytes is how much of a list response is built in scratch
// before it is appended to the response body.
const listFlushBytes = 16 << 10

// New returns an API serving backend with the limits of cfg (zero fields
// take their defaults). log receives one line per bad request (debug
// level), per backend failure that is not an *Error and per recovered
// panic (error level).
func New(cfg Config, backend Backend, log *slog.Logger) (*API, error) {
	if backend == nil {
		return nil, errors.New("httpapi: nil Backend")
	}
	if log == nil {
		return nil, errors.New("httpapi: nil logger")
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	a := &API{
		cfg:     cfg,
		backend: backend,
		log:     log,
		exact:   make(map[string]fasthttp.RequestHandler),

		hdrRevision: []byte(HeaderRevision),
		hdrETag:     []byte(fasthttp.HeaderETag),
	}
	a.scratch.New = func() any { return new(scratch) }
	a.server = &fasthttp.Server{
		Handler:        a.serve,
		ErrorHandler:   a.serveProtocolError,
		HeaderReceived: a.bodyLimit,
		ExpectHandler:  a.expectContinue,
		Name:           "edgekv",
		Logger:         fasthttpLogger{log},

		ReadBufferSize:     cfg.ReadBufferBytes,
		WriteBufferSize:    cfg.WriteBufferBytes,
		ReadTimeout:        cfg.ReadTimeout,
		WriteTimeout:       cfg.WriteTimeout,
		IdleTimeout:        cfg.IdleTimeout,
		Concurrency:        cfg.MaxConns,
		MaxRequestBodySize: max(cfg.MaxRequestBytes, cfg.MaxValueBytes),

		// Bodies are opaque bytes: never parse multipart forms (fasthttp
		// would otherwise stream them into temporary files).
		DisablePreParseMultipartForm: true,
		NoDefaultContentType:         true,
		CloseOnShutdown:              true,
	}
	return a, nil
}

// Server returns the configured fasthttp server: timeouts, buffer sizes,
// body limits (checked from Content-Length, or while reading chunks,
// before a body is read whole), JSON errors for malformed HTTP, and the
// handler. The caller owns its lifetime (Serve, Shutdown).
func (a *API) Server() *fasthttp.Server { return a.server }

// Handler returns the request handler. Served by another fasthttp.Server,
// the key limits and JSON protocol errors hold only if that server is
// configured like Server().
func (a *API) Handler() fasthttp.RequestHandler { return a.serve }

// Handle routes requests whose path is exactly path to h. It must be called
// before serving; paths of this package's endpoints cannot be taken over.
func (a *API) Handle(path string, h fasthttp.RequestHandler) {
	if ownedPath(path) {
		panic(fmt.Sprintf("httpapi: Handle(%q): path belongs to the key-value API", path))
	}
	if _, dup := a.exact[path]; dup {
		panic(fmt.Sprintf("httpapi: Handle(%q) called twice", path))
	}
	a.exact[path] = h
}

// HandlePrefix routes requests whose path starts with prefix (and matches
// no exact route) to h; the first registered matching prefix wins. It must
// be called before serving.
func (a *API) HandlePrefix(prefix string, h fasthttp.RequestHandler) {
	if prefix == "" || ownedPath(prefix) || strings.HasPrefix("/v1/kv/", prefix) {
		panic(fmt.Sprintf("httpapi: HandlePrefix(%q): overlaps the key-value API", prefix))
	}
	a.prefixes = append(a.prefixes, prefixRoute{prefix, h})
}

func ownedPath(p string) bool {
	return p == "/v1/kv" || strings.HasPrefix(p, "/v1/kv/") || p == "/v1/batch" || p == "/healthz" || p == "/readyz"
}

const (
	kvPrefix      = "/v1/kv/"
	kvRangePath   = "/v1/kv"
	batchPath     = "/v1/batch"
	healthzPath   = "/healthz"
	readyzPath    = "/readyz"
	contentJSON   = "application/json"
	contentBinary = "application/octet-stream"
)

// serve is the fasthttp handler: route by the raw request path.
func (a *API) serve(ctx *fasthttp.RequestCtx) {
	defer a.recoverPanic(ctx)
	s := a.scratch.Get().(*scratch)
	defer a.releaseScratch(s)

	path, query, err := requestTarget(ctx)
	if err != nil {
		a.fail(ctx, s, err, isKVTarget(ctx.Request.Header.RequestURI()))
		return
	}
	switch {
	case bytes.HasPrefix(path, []byte(kvPrefix)):
		a.serveKey(ctx, s, path[len(kvPrefix):], query)
	case string(path) == kvRangePath:
		a.serveRange(ctx, s, query)
	case string(path) == batchPath:
		a.serveBatch(ctx, s, query)
	case string(path) == healthzPath:
		a.serveHealthz(ctx, s)
	case string(path) == readyzPath:
		a.serveReadyz(ctx, s)
	default:
		if h := a.route(path); h != nil {
			h(ctx)
			return
		}
		a.fail(ctx, s, &Error{Kind: KindNotFound, Message: "no such endpoint"}, false)
	}
}

func (a *API) route(path []byte) fasthttp.RequestHandler {
	if h, ok := a.exact[string(path)]; ok {
		return h
	}
	for _, r := range a.prefixes {
		if bytes.HasPrefix(path, []byte(r.prefix)) {
			return r.handler
		}
	}
	return nil
}

// requestTarget returns the raw, un-normalized path and query of the
// request. fasthttp normalizes URI().Path() ("//" collapsed, "/../"
// resolved, percent-escapes decoded) and has no server setting to turn
// that off, so keys are read from the request line itself.
func requestTarget(ctx *fasthttp.RequestCtx) (path, query []byte, err *Error) {
	target := ctx.Request.Header.RequestURI()
	if len(target) > 0 && target[0] == '/' {
		return splitTarget(target)
	}
	// Absolute form ("http://host/v1/kv/x"): fasthttp has split off the
	// scheme and host; PathOriginal is the path as sent (fasthttp drops a
	// fragment silently, so refuse one here as in origin form).
	if bytes.IndexByte(target, '#') >= 0 {
		return nil, nil, errFragment
	}
	uri := ctx.URI()
	return uri.PathOriginal(), uri.QueryString(), nil
}

func (a *API) releaseScratch(s *scratch) {
	trim := func(b []byte) []byte {
		if cap(b) > scratchRetainBytes {
			return nil
		}
		return b[:0]
	}
	s.key, s.prefix, s.after, s.num, s.body = trim(s.key), trim(s.prefix), trim(s.after), trim(s.num), trim(s.body)
	if cap(s.ops) > 1024 {
		s.ops = nil
	} else {
		clear(s.ops[:cap(s.ops)]) // drop references to request memory
		s.ops = s.ops[:0]
	}
	a.scratch.Put(s)
}

func (a *API) recoverPanic(ctx *fasthttp.RequestCtx) {
	if r := recover(); r != nil {
		a.log.Error("httpapi: panic while serving a request",
			"method", string(ctx.Method()), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		ctx.Response.Reset()
		writeErrorBody(ctx, nil, &Error{Kind: KindInternal, Message: "internal error"})
	}
}

// serveKey serves /v1/kv/<key>.
func (a *API) serveKey(ctx *fasthttp.RequestCtx, s *scratch, rawKey, query []byte) {
	method := ctx.Method()
	var allowed queryParam
	switch string(method) {
	case fasthttp.MethodGet, fasthttp.MethodHead:
		allowed = paramConsistency
	case fasthttp.MethodPut, fasthttp.MethodDelete:
	default:
		a.methodNotAllowed(ctx, s, "GET, HEAD, PUT, DELETE", true)
		return
	}
	var err *Error
	s.key, err = decodeKey(s.key, rawKey)
	if err != nil {
		a.fail(ctx, s, err, true)
		return
	}
	var q queryArgs
	if err = parseQuery(&q, query, allowed, s.prefix, s.after); err != nil {
		a.fail(ctx, s, err, true)
		return
	}
	switch string(method) {
	case fasthttp.MethodGet, fasthttp.MethodHead:
		a.get(ctx, s, q.consistency)
	case fasthttp.MethodPut:
		a.put(ctx, s)
	case fasthttp.MethodDelete:
		a.delete(ctx, s)
	}
}

// Backend contract violations (answered 500 and logged, never passed on
// as a revision 0 that no key or write can have).
var (
	errZeroWriteRevision = errors.New("httpapi: Backend reported a successful write at revision 0")
	errZeroKeyRevision   = errors.New("httpapi: Backend returned a key with revision 0")
)

// writeHeaders are the request headers a write reads, found in one pass
// over the headers (cheaper than one lookup per name, and it sees
// repeats: a header given twice is refused, never half-read).
type writeHeaders struct {
	ifMatch, ifNoneMatch, idemKey          []byte
	hasIfMatch, hasIfNoneMatch, hasIdemKey bool
}

// readWriteHeaders collects If-Match, If-None-Match and Idempotency-Key.
func readWriteHeaders(h *fasthttp.RequestHeader) (writeHeaders, *Error) {
	var w writeHeaders
	for k, v := range h.All() {
		var slot *[]byte
		var has *bool
		switch {
		case asciiEqualFold(k, fasthttp.HeaderIfMatch):
			slot, has = &w.ifMatch, &w.hasIfMatch
		case asciiEqualFold(k, fasthttp.HeaderIfNoneMatch):
			slot, has = &w.ifNoneMatch, &w.hasIfNoneMatch
		case asciiEqualFold(k, HeaderIdempotencyKey):
			slot, has = &w.idemKey, &w.hasIdemKey
		default:
			continue
		}
		if *has {
			return w, &Error{Kind: KindBadRequest, Message: "header " + string(k) + " given more than once"}
		}
		*slot, *has = v, true
	}
	return w, nil
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// conditions parses If-Match / If-None-Match (the latter only when
// noneMatchOK).
func (w *writeHeaders) conditions(noneMatchOK bool) (ifMatch uint64, ifAbsent bool, err *Error) {
	if w.hasIfMatch {
		if ifMatch, err = parseIfMatch(w.ifMatch); err != nil {
			return 0, false, err
		}
	}
	if w.hasIfNoneMatch {
		if !noneMatchOK {
			return 0, false, &Error{Kind: KindBadRequest, Message: "If-None-Match is not supported here"}
		}
		if err = parseIfNoneMatch(w.ifNoneMatch); err != nil {
			return 0, false, err
		}
		ifAbsent = true
	}
	if ifMatch != 0 && ifAbsent {
		return 0, false, errBothConds
	}
	return ifMatch, ifAbsent, nil
}

// HeaderIdempotencyKey is the request header naming an idempotent write.
const HeaderIdempotencyKey = "Idempotency-Key"

// idempotencyKey returns the validated Idempotency-Key (nil when absent).
func (a *API) idempotencyKey(w *writeHeaders) ([]byte, *Error) {
	if !w.hasIdemKey {
		return nil, nil
	}
	if err := checkIdempotencyKey(w.idemKey, a.cfg.MaxIdempotencyKeyBytes); err != nil {
		return nil, err
	}
	return w.idemKey, nil
}

// errContentEncoding refuses encoded bodies: fasthttp does not decode
// them, and storing gzip bytes as the value would be silently wrong.
var errContentEncoding = &Error{Kind: KindBadRequest, Message: "Content-Encoding is not supported; send the body as is"}

// checkContentEncoding accepts no Content-Encoding or "identity".
func checkContentEncoding(ctx *fasthttp.RequestCtx) *Error {
	ce := ctx.Request.Header.ContentEncoding()
	if len(ce) == 0 || string(trimOWS(ce)) == "identity" {
		return nil
	}
	return errContentEncoding
}

func (a *API) put(ctx *fasthttp.RequestCtx, s *scratch) {
	if err := checkContentEncoding(ctx); err != nil {
		a.fail(ctx, s, err, true)
		return
	}
	req := PutRequest{Key: s.key, Value: ctx.Request.Body()}
	if len(req.Value) > a.cfg.MaxValueBytes {
		// Normally refused from Content-Length before the body is read
		// (bodyLimit); this catches a server configured another way.
		a.fail(ctx, s, Errorf(KindTooLarge, "value larger than %d bytes", a.cfg.MaxValueBytes), true)
		return
	}
	var ok bool
	if req.IfMatch, req.IfAbsent, req.Idempotency.Key, ok = a.writeHeaders(ctx, s, true); !ok {
		return
	}
	if req.Idempotency.Key != nil {
		req.Idempotency.Fingerprint = s.fp.put(&req)
	}
	res, berr := a.backend.Put(ctx, req)
	a.answerWrite(ctx, s, res, berr, true)
}

// writeHeaders reads a single-key write's conditions (If-Match, and
// If-None-Match where allowAbsent) and Idempotency-Key. On bad input it
// answers the client itself and reports false.
func (a *API) writeHeaders(ctx *fasthttp.RequestCtx, s *scratch, allowAbsent bool) (ifMatch uint64, ifAbsent bool, idemKey []byte, ok bool) {
	wh, err := readWriteHeaders(&ctx.Request.Header)
	if err == nil {
		ifMatch, ifAbsent, err = wh.conditions(allowAbsent)
	}
	if err == nil {
		idemKey, err = a.idempotencyKey(&wh)
	}
	if err != nil {
		a.fail(ctx, s, err, true)
		return 0, false, nil, false
	}
	return ifMatch, ifAbsent, idemKey, true
}

// answerWrite answers a single-key write from the backend's result: the
// error, or the revision in the body (and as the ETag when withETag).
func (a *API) answerWrite(ctx *fasthttp.RequestCtx, s *scratch, res WriteResult, berr error, withETag bool) {
	if berr == nil && res.Revision == 0 {
		berr = errZeroWriteRevision
	}
	if berr != nil {
		a.failBackend(ctx, s, res.Meta, berr)
		return
	}
	a.writeMeta(ctx, s, res.Meta)
	if withETag {
		a.setETag(ctx, s, res.Revision)
	}
	a.writeRevisionBody(ctx, s, res.Revision)
}

func (a *API) get(ctx *fasthttp.RequestCtx, s *scratch, c Consistency) {
	res, berr := a.backend.Get(ctx, GetRequest{Key: s.key, Consistency: c})
	if berr == nil && res.KeyRevision == 0 {
		berr = errZeroKeyRevision
	}
	if berr != nil {
		a.failBackend(ctx, s, res.Meta, berr)
		return
	}
	a.writeMeta(ctx, s, res.Meta)
	a.setETag(ctx, s, res.KeyRevision)
	ctx.Response.Header.SetContentType(contentBinary)
	ctx.Response.SetBody(res.Value)
}

func (a *API) delete(ctx *fasthttp.RequestCtx, s *scratch) {
	req := DeleteRequest{Key: s.key}
	var ok bool
	if req.IfMatch, _, req.Idempotency.Key, ok = a.writeHeaders(ctx, s, false); !ok {
		return
	}
	if req.Idempotency.Key != nil {
		req.Idempotency.Fingerprint = s.fp.delete(&req)
	}
	res, berr := a.backend.Delete(ctx, req)
	a.answerWrite(ctx, s, res, berr, false)
}

// serveRange serves GET (list) and DELETE (delete by prefix) on /v1/kv.
func (a *API) serveRange(ctx *fasthttp.RequestCtx, s *scratch, query []byte) {
	var allowed queryParam
	switch string(ctx.Method()) {
	case fasthttp.MethodGet, fasthttp.MethodHead:
		allowed = paramPrefix | paramAfter | paramLimit | paramConsistency
	case fasthttp.MethodDelete:
		allowed = paramPrefix
	default:
		a.methodNotAllowed(ctx, s, "GET, HEAD, DELETE", true)
		return
	}
	var q queryArgs
	if err := parseQuery(&q, query, allowed, s.prefix, s.after); err != nil {
		a.fail(ctx, s, err, true)
		return
	}
	s.prefix, s.after = q.prefix, q.after
	if allowed&paramLimit != 0 {
		a.list(ctx, s, &q)
		return
	}
	a.deletePrefix(ctx, s, &q)
}

func (a *API) list(ctx *fasthttp.RequestCtx, s *scratch, q *queryArgs) {
	res, berr := a.backend.List(ctx, ListRequest{
		Prefix: q.prefix, After: q.after, Limit: q.limit,
		MaxBytes: a.cfg.MaxListResponseBytes, Consistency: q.consistency,
	})
	if berr != nil {
		a.failBackend(ctx, s, res.Meta, berr)
		return
	}
	if len(res.Items) > q.limit {
		// A Backend bug: never send more than the client asked for.
		a.failBackend(ctx, s, res.Meta, fmt.Errorf("backend List returned %d items for limit %d", len(res.Items), q.limit))
		return
	}
	a.writeMeta(ctx, s, res.Meta)
	ctx.Response.Header.SetContentType(contentJSON)
	b := append(s.body[:0], `{"items":[`...)
	// The Backend should stop at MaxBytes; cutting here too keeps the
	// response bounded if it does not (the client pages on with "after").
	more, sizeBytes := res.More, 0
	for i := range res.Items {
		it := &res.Items[i]
		if i > 0 && sizeBytes >= a.cfg.MaxListResponseBytes {
			more = true
			break
		}
		sizeBytes += len(it.Key) + len(it.Value)
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"key":`...)
		b = appendJSONString(b, it.Key)
		b = append(b, `,"value":"`...)
		b = base64.StdEncoding.AppendEncode(b, it.Value)
		b = append(b, `","revision":`...)
		b = strconv.AppendUint(b, it.Revision, 10)
		b = append(b, '}')
		if len(b) >= listFlushBytes {
			ctx.Response.AppendBody(b)
			b = b[:0]
		}
	}
	b = append(b, `],"more":`...)
	b = strconv.AppendBool(b, more)
	b = append(b, `,"revision":`...)
	b = strconv.AppendUint(b, a.headerRevision(res.Meta), 10)
	b = append(b, "}\n"...)
	ctx.Response.AppendBody(b)
	s.body = b
}

func (a *API) deletePrefix(ctx *fasthttp.RequestCtx, s *scratch, q *queryArgs) {
	if len(q.prefix) == 0 {
		a.fail(ctx, s, &Error{Kind: KindBadRequest, Message: "DELETE /v1/kv needs a non-empty ?prefix="}, true)
		return
	}
	wh, err := readWriteHeaders(&ctx.Request.Header)
	if err != nil {
		a.fail(ctx, s, err, true)
		return
	}
	if wh.hasIfMatch || wh.hasIfNoneMatch {
		a.fail(ctx, s, &Error{Kind: KindBadRequest, Message: "If-Match and If-None-Match are not supported on a prefix delete"}, true)
		return
	}
	req := DeletePrefixRequest{Prefix: q.prefix}
	if req.Idempotency.Key, err = a.idempotencyKey(&wh); err != nil {
		a.fail(ctx, s, err, true)
		return
	}
	if req.Idempotency.Key != nil {
		req.Idempotency.Fingerprint = s.fp.deletePrefix(&req)
	}
	res, berr := a.backend.DeletePrefix(ctx, req)
	if berr != nil {
		a.failBackend(ctx, s, res.Meta, berr)
		return
	}
	a.writeMeta(ctx, s, res.Meta)
	ctx.Response.Header.SetContentType(contentJSON)
	b := append(s.body[:0], `{"revision":`...)
	b = strconv.AppendUint(b, res.Revision, 10)
	b = append(b, `,"deleted":`...)
	b = strconv.AppendUint(b, res.Deleted, 10)
	b = append(b, "}\n"...)
	ctx.Response.SetBody(b)
	s.body = b
}

func (a *API) serveBatch(ctx *fasthttp.RequestCtx, s *scratch, query []byte) {
	if string(ctx.Method()) != fasthttp.MethodPost {
		a.methodNotAllowed(ctx, s, "POST", true)
		return
	}
	var q queryArgs
	if err := parseQuery(&q, query, 0, s.prefix, s.after); err != nil {
		a.fail(ctx, s, err, true)
		return
	}
	if err := checkContentEncoding(ctx); err != nil {
		a.fail(ctx, s, err, true)
		return
	}
	body := ctx.Request.Body()
	if len(body) > a.cfg.MaxRequestBytes {
		a.fail(ctx, s, Errorf(KindTooLarge, "request body larger than %d bytes", a.cfg.MaxRequestBytes), true)
		return
	}
	wh, err := readWriteHeaders(&ctx.Request.Header)
	if err != nil {
		a.fail(ctx, s, err, true)
		return
	}
	if wh.hasIfMatch || wh.hasIfNoneMatch {
		a.fail(ctx, s, &Error{Kind: KindBadRequest, Message: "batch conditions go in the ops (if_match, if_absent), not in headers"}, true)
		return
	}
	req := BatchRequest{}
	if req.Idempotency.Key, err = a.idempotencyKey(&wh); err != nil {
		a.fail(ctx, s, err, true)
		return
	}
	s.ops, err = parseBatch(s.ops, body, batchLimits{maxOps: a.cfg.MaxTxnOps, maxValueBytes: a.cfg.MaxValueBytes})
	if err != nil {
		a.fail(ctx, s, err, true)
		return
	}
	req.Ops = s.ops
	if req.Idempotency.Key != nil {
		req.Idempotency.Fingerprint = s.fp.batch(&req)
	}
	res, berr := a.backend.Batch(ctx, req)
	if berr != nil {
		a.failBackend(ctx, s, res.Meta, berr)
		return
	}
	a.writeMeta(ctx, s, res.Meta)
	a.writeRevisionBody(ctx, s, res.Revision)
}

func (a *API) serveHealthz(ctx *fasthttp.RequestCtx, s *scratch) {
	if m := string(ctx.Method()); m != fasthttp.MethodGet && m != fasthttp.MethodHead {
		a.methodNotAllowed(ctx, s, "GET, HEAD", false)
		return
	}
	ctx.Response.Header.SetContentType(contentJSON)
	ctx.Response.SetBodyString("{\"status\":\"up\"}\n")
}

func (a *API) serveReadyz(ctx *fasthttp.RequestCtx, s *scratch) {
	if m := string(ctx.Method()); m != fasthttp.MethodGet && m != fasthttp.MethodHead {
		a.methodNotAllowed(ctx, s, "GET, HEAD", false)
		return
	}
	if err := a.backend.Ready(ctx); err != nil {
		e, typed := asError(err)
		if !typed {
			a.log.Error("httpapi: backend Ready returned an untyped error", "err", err)
			e = &Error{Kind: KindUnavailable, Message: "not ready"}
		}
		if e.Kind != KindUnavailable {
			// Not ready is always 503, whatever kind the Backend chose.
			e = &Error{Kind: KindUnavailable, Message: e.Message, RetryAfter: e.RetryAfter}
		}
		writeErrorBody(ctx, s, a.withRetry(e))
		return
	}
	ctx.Response.Header.SetContentType(contentJSON)
	ctx.Response.SetBodyString("{\"status\":\"ready\"}\n")
}

func (a *API) methodNotAllowed(ctx *fasthttp.RequestCtx, s *scratch, allow string, kv bool) {
	ctx.Response.Header.Set(fasthttp.HeaderAllow, allow)
	a.fail(ctx, s, &Error{Kind: KindMethodNotAllowed, Message: "method " + string(truncate(ctx.Method())) + " not allowed; allowed: " + allow}, kv)
}

// fail answers a request the HTTP layer refuses itself. kv says whether
// the path is a KV endpoint (which always carries X-Edgekv-Revision).
func (a *API) fail(ctx *fasthttp.RequestCtx, s *scratch, e *Error, kv bool) {
	if a.log.Enabled(ctx, slog.LevelDebug) {
		a.log.Debug("httpapi: bad request", "method", string(ctx.Method()),
			"target", string(truncate(ctx.Request.Header.RequestURI())),
			"remote", ctx.RemoteAddr().String(), "status", e.Kind.Status(), "err", e.Message)
	}
	if kv {
		a.writeMeta(ctx, s, a.backend.Meta())
	}
	writeErrorBody(ctx, s, a.withRetry(e))
}

// failBackend answers a Backend failure.
func (a *API) failBackend(ctx *fasthttp.RequestCtx, s *scratch, m Meta, err error) {
	e, typed := asError(err)
	if !typed {
		a.log.Error("httpapi: backend returned an untyped error", "method", string(ctx.Method()),
			"target", string(truncate(ctx.Request.Header.RequestURI())), "err", err)
	}
	a.writeMeta(ctx, s, m)
	writeErrorBody(ctx, s, a.withRetry(e))
}

// withRetry fills in the default Retry-After of a retryable error.
func (a *API) withRetry(e *Error) *Error {
	if e.Kind.retryable() && e.RetryAfter <= 0 {
		c := *e
		c.RetryAfter = a.cfg.DefaultRetryAfter
		return &c
	}
	return e
}

// headerRevision is the X-Edgekv-Revision of a response with meta m.
func (a *API) headerRevision(m Meta) uint64 {
	if m.Revision != 0 {
		return m.Revision
	}
	return a.backend.Meta().Revision
}

// isKVTarget reports whether a raw request target names a key-value
// endpoint (whose every response carries X-Edgekv-Revision).
func isKVTarget(target []byte) bool {
	path, _ := cutByte(originPath(target), '?')
	return bytes.HasPrefix(path, []byte(kvPrefix)) || string(path) == kvRangePath || string(path) == batchPath
}

// writeMeta sets X-Edgekv-Revision and, on a follower, X-Edgekv-Leader.
// s may be nil (answers written outside the handler).
func (a *API) writeMeta(ctx *fasthttp.RequestCtx, s *scratch, m Meta) {
	if m.Revision == 0 {
		m = a.backend.Meta()
	}
	if s != nil {
		s.num = strconv.AppendUint(s.num[:0], m.Revision, 10)
		ctx.Response.Header.SetCanonical(a.hdrRevision, s.num)
	} else {
		var nb [20]byte
		ctx.Response.Header.SetBytesV(HeaderRevision, strconv.AppendUint(nb[:0], m.Revision, 10))
	}
	if m.Follower && m.Leader != "" {
		ctx.Response.Header.Set(HeaderLeader, m.Leader)
	}
}

// Response header names.
const (
	HeaderRevision = "X-Edgekv-Revision"
	HeaderLeader   = "X-Edgekv-Leader"
)

func (a *API) setETag(ctx *fasthttp.RequestCtx, s *scratch, rev uint64) {
	s.num = append(s.num[:0], '"')
	s.num = strconv.AppendUint(s.num, rev, 10)
	s.num = append(s.num, '"')
	ctx.Response.Header.SetCanonical(a.hdrETag, s.num)
}

// writeRevisionBody writes {"revision":N}.
func (a *API) writeRevisionBody(ctx *fasthttp.RequestCtx, s *scratch, rev uint64) {
	ctx.Response.Header.SetContentType(contentJSON)
	b := append(s.body[:0], `{"revision":`...)
	b = strconv.AppendUint(b, rev, 10)
	b = append(b, "}\n"...)
	ctx.Response.SetBody(b)
	s.body = b
}

// writeErrorBody writes e as the JSON error response. s may be nil.
func writeErrorBody(ctx *fasthttp.RequestCtx, s *scratch, e *Error) {
	ctx.SetStatusCode(e.Kind.Status())
	ctx.Response.Header.SetContentType(contentJSON)
	if e.Kind.retryable() {
		secs := int64((e.RetryAfter + time.Second - 1) / time.Second)
		if secs < 1 {
			secs = 1
		}
		var nb [20]byte
		ctx.Response.Header.SetBytesV(fasthttp.HeaderRetryAfter, strconv.AppendInt(nb[:0], secs, 10))
	}
	var b []byte
	if s != nil {
		b = s.body[:0]
	}
	b = append(b, `{"error":`...)
	b = appendJSONString(b, []byte(e.Message))
	b = append(b, `,"code":"`...)
	b = append(b, e.Kind.Code()...)
	b = append(b, '"')
	if e.Kind == KindPreconditionFailed && e.Failed != nil {
		b = append(b, `,"failed":[`...)
		for i, idx := range e.Failed {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, int64(idx), 10)
		}
		b = append(b, ']')
	}
	b = append(b, "}\n"...)
	ctx.Response.SetBody(b)
	if s != nil {
		s.body = b
	}
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 (never in
// keys, possible in messages) is replaced by U+FFFD.
func appendJSONString(dst, s []byte) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < 0x80 {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20 || c == 0x7f:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, "\ufffd"...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

// bodyLimit (Server.HeaderReceived) picks the body limit of a request
// from its request line, before any body byte is read: a PUT of a key is
// bounded by MaxValueBytes, everything else by MaxRequestBytes.
func (a *API) bodyLimit(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	return fasthttp.RequestConfig{MaxRequestBodySize: a.bodyLimitBytes(h)}
}

func (a *API) bodyLimitBytes(h *fasthttp.RequestHeader) int {
	if string(h.Method()) == fasthttp.MethodPut && bytes.HasPrefix(originPath(h.RequestURI()), []byte(kvPrefix)) {
		return a.cfg.MaxValueBytes
	}
	return a.cfg.MaxRequestBytes
}

// originPath returns the part of a raw request target from its path on:
// the target itself in origin form ("/v1/kv/x"), the target without
// "scheme://host" in absolute form ("http://h/v1/kv/x").
func originPath(target []byte) []byte {
	if len(target) > 0 && target[0] == '/' {
		return target
	}
	if i := bytes.Index(target, []byte("://")); i >= 0 {
		rest := target[i+3:]
		if j := bytes.IndexByte(rest, '/'); j >= 0 {
			return rest[j:]
		}
	}
	return nil
}

// expectContinue (Server.ExpectHandler) refuses an "Expect: 100-continue"
// request whose announced body is over its limit with a JSON 413 instead
// of inviting the client to send it.
func (a *API) expectContinue(ctx *fasthttp.RequestCtx) int {
	limit := a.bodyLimitBytes(&ctx.Request.Header)
	if n := ctx.Request.Header.ContentLength(); n > limit {
		// fasthttp v1.74.0 writes the response as left here, body
		// included, with the returned status (TestExpectContinue checks
		// the JSON body arrives).
		e := Errorf(KindTooLarge, "request body of %d bytes is over the limit of %d bytes", n, limit)
		a.logProtocolError(ctx, e)
		if isKVTarget(ctx.Request.Header.RequestURI()) {
			a.writeMeta(ctx, nil, a.backend.Meta())
		}
		writeErrorBody(ctx, nil, e)
		return fasthttp.StatusRequestEntityTooLarge
	}
	return fasthttp.StatusContinue
}

// serveProtocolError (Server.ErrorHandler) answers requests fasthttp could
// not read, in the same JSON shape as every other error.
func (a *API) serveProtocolError(ctx *fasthttp.RequestCtx, err error) {
	var e *Error
	var small *fasthttp.ErrSmallBuffer
	var timeout interface{ Timeout() bool } // net.Error, fasthttputil pipes
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		e = Errorf(KindTooLarge, "request body over the limit of %d bytes", a.bodyLimitBytes(&ctx.Request.Header))
	case errors.As(err, &small):
		e = Errorf(KindTooLarge, "request line and headers over %d bytes (a key is at most %d bytes)", a.cfg.ReadBufferBytes, MaxKeyBytes)
	case errors.As(err, &timeout) && timeout.Timeout():
		e = &Error{Kind: KindRequestTimeout, Message: "request not received in time"}
	default:
		e = &Error{Kind: KindBadRequest, Message: "malformed HTTP request"}
	}
	a.logProtocolError(ctx, fmt.Errorf("%s: %w (%T)", e.Message, err, err))
	ctx.Response.Reset()
	if isKVTarget(ctx.Request.Header.RequestURI()) {
		a.writeMeta(ctx, nil, a.backend.Meta())
	}
	writeErrorBody(ctx, nil, e)
}

func (a *API) logProtocolError(ctx *fasthttp.RequestCtx, err error) {
	if a.log.Enabled(context.Background(), slog.LevelDebug) {
		a.log.Debug("httpapi: unreadable request", "remote", ctx.RemoteAddr().String(), "err", err)
	}
}

// fasthttpLogger sends fasthttp's own messages (connection-level errors)
// to slog at debug level: they are caused by clients.
type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug("fasthttp: " + fmt.Sprintf(format, args...))
	}
}
