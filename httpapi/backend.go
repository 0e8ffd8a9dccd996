package httpapi

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Backend is what the HTTP layer calls to serve the key-value API. The node
// runtime implements it; tests use an in-memory fake.
//
// Calling conventions, for every method:
//
//   - Every []byte in a request points into the HTTP layer's buffers and is
//     valid only until the method returns: a Backend that keeps a key or a
//     value beyond the call (for example in a Raft proposal) must copy it.
//   - Every []byte in a result is read (copied into the response) by the
//     HTTP layer before its request handler returns, and never modified;
//     the Backend must keep it unchanged until then (slices of an
//     immutable snapshot of the store satisfy this).
//   - ctx is the request's *fasthttp.RequestCtx: it must not be kept or
//     used after the method returns (fasthttp reuses it).
//   - Requests reach the Backend only after validation: keys and prefixes are
//     valid UTF-8 within MaxKeyBytes (keys non-empty), values within
//     Config.MaxValueBytes, batches within Config.MaxTxnOps with distinct
//     keys, IfMatch is 0 (no condition) or a revision >= 1, IfMatch and
//     IfAbsent are never both set, list limits are within 1..MaxListLimit.
//   - Failures are returned as *Error (possibly wrapped); its Kind decides
//     the HTTP status. Any other error is a bug in the Backend and is
//     answered with 500 {"code":"internal"} and logged at error level. A
//     write whose outcome is unknown (it may still commit) must be reported
//     as KindTimeout, never as KindUnavailable.
//   - Revisions start at 1: a successful Put or Delete reports the
//     revision it was applied at (>= 1) and Get the key's revision (>= 1);
//     a zero there is a Backend bug, answered 500 and logged. (Batch and
//     DeletePrefix may have changed nothing, so the store revision they
//     report may still be 0 on an empty store.)
//   - The Meta of a result is used for the X-Edgekv-Revision and
//     X-Edgekv-Leader headers, also when the method returns an error (for
//     example the revision a 404 reflects). When a result's Meta.Revision is
//     zero the HTTP layer uses Backend.Meta() instead.
//   - Methods are called concurrently from many connections and block until
//     they have an answer; they must bound their own wait (the runtime's
//     --request-timeout). ctx is done when the HTTP server shuts down.
type Backend interface {
	// Put writes one key (PUT /v1/kv/<key>). On success Meta.Revision is the
	// revision the write was applied at (also the key's new revision).
	Put(ctx context.Context, req PutRequest) (WriteResult, error)
	// Get reads one key (GET /v1/kv/<key>). A missing key is KindNotFound.
	Get(ctx context.Context, req GetRequest) (GetResult, error)
	// Delete removes one key (DELETE /v1/kv/<key>). A missing key is
	// KindNotFound (after any If-Match check: If-Match on a missing key is
	// KindPreconditionFailed).
	Delete(ctx context.Context, req DeleteRequest) (WriteResult, error)
	// List returns keys in ascending byte order under Prefix and strictly
	// after After (GET /v1/kv?prefix&after&limit).
	List(ctx context.Context, req ListRequest) (ListResult, error)
	// DeletePrefix atomically removes every key under a non-empty prefix
	// (DELETE /v1/kv?prefix=).
	DeletePrefix(ctx context.Context, req DeletePrefixRequest) (DeletePrefixResult, error)
	// Batch applies all ops atomically at one revision, or none (POST
	// /v1/batch). Failed conditions are KindPreconditionFailed with
	// Error.Failed listing the indexes of the failing ops in ascending order.
	Batch(ctx context.Context, req BatchRequest) (WriteResult, error)
	// Ready returns nil when this node has a leader and has applied up to the
	// commit index it knew when asked (GET /readyz), else an *Error saying
	// why (usually KindUnavailable).
	Ready(ctx context.Context) error
	// Meta returns this node's current applied store revision and leader
	// knowledge. It must be cheap and lock-free: it is called for responses
	// the HTTP layer answers itself (bad input on KV paths).
	Meta() Meta
}

// Consistency selects how a read is served (?consistency=).
type Consistency uint8

const (
	// Linearizable reads go through ReadIndex (the default).
	Linearizable Consistency = iota
	// Lease reads are served by the leader under its lease; they rely on
	// bounded clock drift.
	Lease
	// Stale reads are served from this node's applied state, no round trip.
	Stale
)

// String returns the query-string spelling of c.
func (c Consistency) String() string {
	switch c {
	case Linearizable:
		return "linearizable"
	case Lease:
		return "lease"
	case Stale:
		return "stale"
	}
	return fmt.Sprintf("Consistency(%d)", uint8(c))
}

// FingerprintBytes is the size of a request fingerprint.
const FingerprintBytes = 16

// Fingerprint identifies the content of a write request: two requests with
// the same Idempotency-Key are "the same request" exactly when their
// fingerprints are equal. It is the first 16 bytes of a SHA-256 over a
// length-prefixed encoding of the operation, key(s), value(s) and
// conditions, so it does not depend on JSON spelling or header order.
type Fingerprint [FingerprintBytes]byte

// Idempotency carries the Idempotency-Key of a write. Key is empty when the
// client sent none; then Fingerprint is zero and must be ignored.
type Idempotency struct {
	Key         []byte
	Fingerprint Fingerprint
}

// PutRequest is PUT /v1/kv/<key>.
type PutRequest struct {
	Key   []byte
	Value []byte
	// IfMatch, when non-zero, makes the write conditional on the key's
	// current revision being IfMatch (If-Match: "N").
	IfMatch uint64
	// IfAbsent makes the write conditional on the key being absent
	// (If-None-Match: *).
	IfAbsent    bool
	Idempotency Idempotency
}

// GetRequest is GET /v1/kv/<key>.
type GetRequest struct {
	Key         []byte
	Consistency Consistency
}

// DeleteRequest is DELETE /v1/kv/<key>.
type DeleteRequest struct {
	Key         []byte
	IfMatch     uint64 // 0: unconditional
	Idempotency Idempotency
}

// ListRequest is GET /v1/kv?prefix=&after=&limit=.
type ListRequest struct {
	Prefix []byte // empty: every key
	After  []byte // empty: from the first key under Prefix
	// Limit is the maximum number of items, 1..MaxListLimit.
	Limit int
	// MaxBytes bounds the sum of key and value bytes in the result: the
	// Backend stops adding items once the sum reaches it and sets More
	// (the first item is always returned whatever its size).
	MaxBytes    int
	Consistency Consistency
}

// DeletePrefixRequest is DELETE /v1/kv?prefix=.
type DeletePrefixRequest struct {
	Prefix      []byte // never empty
	Idempotency Idempotency
}

// OpKind is the kind of one batch op.
type OpKind uint8

const (
	OpPut OpKind = iota + 1
	OpDelete
)

// BatchOp is one op of a POST /v1/batch.
type BatchOp struct {
	Kind  OpKind
	Key   []byte
	Value []byte // OpPut only
	// IfMatch, when non-zero: the key's current revision must be IfMatch.
	IfMatch uint64
	// IfAbsent (OpPut only): the key must be absent.
	IfAbsent bool
}

// BatchRequest is POST /v1/batch: every op applies at one revision, or none.
type BatchRequest struct {
	Ops         []BatchOp
	Idempotency Idempotency
}

// Meta is what every KV response reports about the node that served it.
type Meta struct {
	// Revision is the store revision the response reflects
	// (X-Edgekv-Revision).
	Revision uint64
	// Follower is true when this node is not the leader; then Leader (when
	// known) is sent as X-Edgekv-Leader.
	Follower bool
	Leader   string
}

// WriteResult is the outcome of Put, Delete and Batch.
type WriteResult struct {
	Meta // Meta.Revision: the revision the write was applied at
}

// GetResult is the outcome of Get.
type GetResult struct {
	Meta
	Value []byte
	// KeyRevision is the revision of the key's last write (the ETag).
	KeyRevision uint64
}

// ListItem is one key of a ListResult.
type ListItem struct {
	Key      []byte
	Value    []byte
	Revision uint64 // the key's revision
}

// ListResult is the outcome of List.
type ListResult struct {
	Meta
	Items []ListItem
	// More is true when keys after the last item exist under the prefix.
	More bool
}

// DeletePrefixResult is the outcome of DeletePrefix.
type DeletePrefixResult struct {
	Meta           // Meta.Revision: the revision of the deletion
	Deleted uint64 // number of keys removed
}

// ErrorKind classifies a failure; each kind is one row of SPEC §2's table.
type ErrorKind uint8

const (
	KindInternal            ErrorKind = iota // 500 internal: a bug
	KindBadRequest                           // 400 bad_request
	KindNotFound                             // 404 not_found
	KindMethodNotAllowed                     // 405 method_not_allowed
	KindRequestTimeout                       // 408 request_timeout (client too slow to send)
	KindIdempotencyConflict                  // 409 idempotency_conflict
	KindPreconditionFailed                   // 412 precondition_failed
	KindTooLarge                             // 413 too_large
	KindOverloaded                           // 429 overloaded, Retry-After
	KindUnavailable                          // 503 unavailable, Retry-After
	KindTimeout                              // 504 timeout: outcome unknown
	KindQuotaExceeded                        // 507 quota_exceeded
	numKinds
)

var kindStatus = [numKinds]int{500, 400, 404, 405, 408, 409, 412, 413, 429, 503, 504, 507}

var kindCode = [numKinds]string{
	"internal", "bad_request", "not_found", "method_not_allowed", "request_timeout",
	"idempotency_conflict", "precondition_failed", "too_large", "overloaded",
	"unavailable", "timeout", "quota_exceeded",
}

// Status returns the HTTP status of k (500 for an unknown kind).
func (k ErrorKind) Status() int {
	if k >= numKinds {
		return 500
	}
	return kindStatus[k]
}

// Code returns the JSON "code" of k ("internal" for an unknown kind).
func (k ErrorKind) Code() string {
	if k >= numKinds {
		return "internal"
	}
	return kindCode[k]
}

// retryable reports whether responses of kind k carry Retry-After.
func (k ErrorKind) retryable() bool { return k == KindOverloaded || k == KindUnavailable }

// Error is a failure the HTTP layer turns into a JSON error response.
type Error struct {
	Kind    ErrorKind
	Message string // human-readable; sent as "error"
	// RetryAfter is sent (rounded up to whole seconds, at least 1) as
	// Retry-After with KindOverloaded and KindUnavailable; zero selects
	// Config.DefaultRetryAfter.
	RetryAfter time.Duration
	// Failed lists the indexes of the batch ops whose condition failed
	// (KindPreconditionFailed from Batch only).
	Failed []int
}

func (e *Error) Error() string { return e.Kind.Code() + ": " + e.Message }

// Errorf returns an *Error of kind k with a formatted message.
func Errorf(k ErrorKind, format string, args ...any) *Error {
	return &Error{Kind: k, Message: fmt.Sprintf(format, args...)}
}

// asError extracts the *Error from err, or reports an internal failure.
func asError(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) && e != nil {
		return e, true
	}
	return &Error{Kind: KindInternal, Message: "internal error"}, false
}
