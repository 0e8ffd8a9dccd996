// Package httpapi is edgekv's client-facing HTTP layer (SPEC §2) on
// github.com/valyala/fasthttp: it decodes and validates requests, calls a
// Backend (the node runtime), and encodes answers and errors.
//
// It must never: decide anything about consensus, ordering or durability
// (the Backend does); pass unvalidated input to the Backend; normalize a
// key; read a request body over its limit; answer with anything but the
// JSON error shape on failure; or crash on any input.
//
// # Keys
//
// A key is 1..4096 bytes of valid UTF-8. In a path it is everything after
// "/v1/kv/" up to '?', percent-decoded, exactly as sent on the request
// line: no path normalization, so "/v1/kv/a%2F..%2Fb" and "/v1/kv/a/../b"
// are both the key "a/../b" and "/v1/kv//x" is the key "/x". In a path
// '+' is a plus; '%' must start a two-hex-digit escape. fasthttp normalizes
// URI().Path() and has no server setting to turn that off, so keys are read
// from RequestHeader.RequestURI() (absolute-form targets from
// URI().PathOriginal()). A '#' anywhere in the target is refused. Query
// values (prefix, after) are decoded as application/x-www-form-urlencoded:
// '+' is a space, "%2B" a plus.
//
// Empty or malformed keys and invalid UTF-8 are 400; a key (or prefix or
// after value) over 4096 bytes is 413. The read buffer (Config.ReadBufferBytes,
// default 32 KiB) holds the request line and headers: a list request whose
// prefix and after are both fully percent-encoded 4096-byte keys fits with
// about 8 KiB of headers to spare; a request line or headers over it get a
// JSON 413.
//
// # Endpoints
//
// Every response to a KV endpoint (/v1/kv/..., /v1/kv, /v1/batch), errors
// included, carries X-Edgekv-Revision: the store revision it reflects;
// when the Backend reports this node is a follower that knows its leader,
// also X-Edgekv-Leader: <leader name>. JSON bodies end with a newline.
//
//	PUT /v1/kv/<key>            body = raw value (<= Config.MaxValueBytes)
//	    If-Match: "N"           write only if the key's revision is N (N >= 1,
//	                            canonical decimal; weak tags, lists, * are 400)
//	    If-None-Match: *        write only if the key is absent (any other value is 400;
//	                            combined with If-Match is 400)
//	    Idempotency-Key: <id>   1..Config.MaxIdempotencyKeyBytes visible ASCII
//	    → 200 {"revision":N}, ETag: "N"
//	GET|HEAD /v1/kv/<key>[?consistency=linearizable|lease|stale]
//	    → 200 raw value (application/octet-stream), ETag: "<key's revision>"; 404
//	DELETE /v1/kv/<key>         If-Match and Idempotency-Key as for PUT
//	    → 200 {"revision":N}; 404
//	GET|HEAD /v1/kv[?prefix=<p>][&after=<key>][&limit=<1..1000, default 100>][&consistency=...]
//	    → 200 {"items":[{"key":"...","value":"<base64>","revision":N},...],"more":bool,"revision":N}
//	      keys ascending, strictly after "after"; a page is also cut at
//	      Config.MaxListResponseBytes of keys and values ("more": true)
//	DELETE /v1/kv?prefix=<non-empty p>   Idempotency-Key allowed
//	    → 200 {"revision":N,"deleted":count}
//	POST /v1/batch              body <= Config.MaxRequestBytes, Idempotency-Key allowed
//	    {"ops":[{"op":"put","key":"a","value":"<base64>","if_match":12},
//	            {"op":"delete","key":"b"},
//	            {"op":"put","key":"c","value":"","if_absent":true}]}
//	    → 200 {"revision":N}
//	    → 412 {"error":"...","code":"precondition_failed","failed":[0,2]}, nothing applied
//	GET|HEAD /healthz           → 200 {"status":"up"} while the process serves
//	GET|HEAD /readyz            → 200 {"status":"ready"} when Backend.Ready says so,
//	                              else 503 JSON error with Retry-After
//
// Batch rules: the body is one JSON object with exactly the field "ops";
// unknown fields anywhere are 400; 1..Config.MaxTxnOps ops (more is 413,
// refused when op MaxTxnOps+1 starts); "op" is "put" or "delete"; "key" a
// JSON string (invalid UTF-8 and lone surrogate escapes are 400, never
// replaced); a put needs "value" in standard padded base64; a delete takes
// no "value" and no "if_absent"; "if_match" is an integer >= 1; "if_match"
// with "if_absent" is 400; two ops on one key are 400.
//
// If-Match, If-None-Match and Idempotency-Key sent on more than one header
// line are 400. Bodies are taken as sent: a Content-Encoding other than
// identity is 400 (never stored encoded).
//
// Query strings: only the parameters listed for an endpoint are accepted;
// unknown, repeated or malformed parameters are 400 (a typo must not
// silently change a request). Headers If-Match / If-None-Match where not
// listed above are 400.
//
// # Errors
//
// Every error is {"error":"<message>","code":"<code>"} (plus "failed" on a
// batch 412), Content-Type application/json:
//
//	400 bad_request           malformed key, body, header, query; malformed HTTP
//	404 not_found             key absent; unknown path
//	405 method_not_allowed    (with Allow)
//	408 request_timeout       request not received within Config.ReadTimeout
//	409 idempotency_conflict  Idempotency-Key reused with a different request
//	412 precondition_failed   If-Match / If-None-Match / batch condition failed
//	413 too_large             key, value, body, op count, request line or headers over the limit
//	429 overloaded            Retry-After
//	500 internal              a Backend bug (untyped error or panic), logged
//	503 unavailable           Retry-After
//	504 timeout               a write's outcome is unknown
//	507 quota_exceeded
//
// Body limits are enforced by fasthttp from Content-Length before the body
// is read (while reading for chunked bodies): Server.HeaderReceived picks
// Config.MaxValueBytes for PUT /v1/kv/..., Config.MaxRequestBytes for the
// rest; "Expect: 100-continue" over the limit gets the 413 instead of 100.
// Server.ErrorHandler turns every fasthttp read error into the JSON shape.
// Multipart bodies are never parsed.
//
// # Idempotency
//
// With an Idempotency-Key, the HTTP layer computes a Fingerprint of the
// request's meaning (operation, keys, values, conditions; not JSON
// spelling) and passes both to the Backend, which stores the first outcome
// with them and answers 409 for the same key with another fingerprint.
//
// # Performance
//
// GET, PUT and DELETE of small values allocate nothing in the handler in
// steady state (TestHotPathAllocs): JSON is appended by hand into pooled
// per-request scratch buffers, headers are set from bytes. Batch parsing
// uses encoding/json.
//
// # Extending
//
// Later endpoints (/v1/cluster, /metrics, /v1/snapshot, /debug/pprof/)
// are added with API.Handle and API.HandlePrefix before serving; the KV
// paths cannot be taken over.
package httpapi
