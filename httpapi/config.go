package httpapi

import (
	"fmt"
	"time"
)

// Fixed limits of SPEC §2 (not configurable).
const (
	// MaxKeyBytes is the largest key, prefix or after value, in bytes of
	// UTF-8 after percent-decoding.
	MaxKeyBytes = 4096
	// MaxListLimit is the largest ?limit= of a list.
	MaxListLimit = 1000
	// DefaultListLimit is the ?limit= of a list that gives none.
	DefaultListLimit = 100
	// maxEncodedKeyBytes is the longest percent-encoding of a MaxKeyBytes
	// key: a longer raw segment cannot decode to a key within the limit.
	maxEncodedKeyBytes = 3 * MaxKeyBytes
)

// minReadBufferBytes is the smallest Config.ReadBufferBytes accepted: the
// request line of a PUT of a fully percent-encoded MaxKeyBytes key
// ("PUT /v1/kv/" + 12 KiB + " HTTP/1.1") plus 4 KiB of headers.
const minReadBufferBytes = 16 << 10

// Config holds the HTTP layer's limits. The node runtime fills it from
// flags; a zero field selects the default given in its comment.
type Config struct {
	// MaxValueBytes bounds a value (--max-value-bytes, default 1 MiB). A PUT
	// body over it is refused with 413 before it is read.
	MaxValueBytes int
	// MaxRequestBytes bounds any other request body, a batch in particular
	// (--max-request-bytes, default 4 MiB); refused with 413 before it is read.
	MaxRequestBytes int
	// MaxTxnOps bounds the ops of one batch (--max-txn-ops, default 10000).
	MaxTxnOps int
	// MaxListResponseBytes bounds the key and value bytes of one list page
	// (default 4 MiB); a page cut short by it says "more": true.
	MaxListResponseBytes int
	// MaxIdempotencyKeyBytes bounds an Idempotency-Key header (default 256).
	MaxIdempotencyKeyBytes int
	// ReadBufferBytes is fasthttp's per-connection read buffer; it bounds the
	// request line plus headers (default 32 KiB: a list request whose
	// prefix and after are both fully percent-encoded 4 KiB keys takes
	// about 24.1 KiB, leaving about 8 KiB for headers). At least 16 KiB.
	ReadBufferBytes int
	// WriteBufferBytes is fasthttp's per-connection write buffer (default 8 KiB).
	WriteBufferBytes int
	// ReadTimeout bounds reading one request, headers and body (default 30s).
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one response (default 30s).
	WriteTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a keep-alive
	// connection (default 2m).
	IdleTimeout time.Duration
	// MaxConns bounds concurrent client connections (default 64 Ki).
	MaxConns int
	// DefaultRetryAfter is the Retry-After of 429 and 503 answers whose
	// Backend error gives none (default 1s).
	DefaultRetryAfter time.Duration
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	setInt := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	setDur := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	setInt(&c.MaxValueBytes, 1<<20)
	setInt(&c.MaxRequestBytes, 4<<20)
	setInt(&c.MaxTxnOps, 10000)
	setInt(&c.MaxListResponseBytes, 4<<20)
	setInt(&c.MaxIdempotencyKeyBytes, 256)
	setInt(&c.ReadBufferBytes, 32<<10)
	setInt(&c.WriteBufferBytes, 8<<10)
	setDur(&c.ReadTimeout, 30*time.Second)
	setDur(&c.WriteTimeout, 30*time.Second)
	setDur(&c.IdleTimeout, 2*time.Minute)
	setInt(&c.MaxConns, 64<<10)
	setDur(&c.DefaultRetryAfter, time.Second)
	return c
}

// validate reports the first unusable field of a defaulted Config.
func (c Config) validate() error {
	positive := []struct {
		name string
		v    int64
	}{
		{"MaxValueBytes", int64(c.MaxValueBytes)},
		{"MaxRequestBytes", int64(c.MaxRequestBytes)},
		{"MaxTxnOps", int64(c.MaxTxnOps)},
		{"MaxListResponseBytes", int64(c.MaxListResponseBytes)},
		{"MaxIdempotencyKeyBytes", int64(c.MaxIdempotencyKeyBytes)},
		{"WriteBufferBytes", int64(c.WriteBufferBytes)},
		{"MaxConns", int64(c.MaxConns)},
		{"ReadTimeout", int64(c.ReadTimeout)},
		{"WriteTimeout", int64(c.WriteTimeout)},
		{"IdleTimeout", int64(c.IdleTimeout)},
		{"DefaultRetryAfter", int64(c.DefaultRetryAfter)},
	}
	for _, p := range positive {
		if p.v <= 0 {
			return fmt.Errorf("httpapi config: %s must be positive, got %d", p.name, p.v)
		}
	}
	if c.ReadBufferBytes < minReadBufferBytes {
		return fmt.Errorf("httpapi config: ReadBufferBytes must be at least %d (a percent-encoded %d-byte key), got %d",
			minReadBufferBytes, MaxKeyBytes, c.ReadBufferBytes)
	}
	return nil
}
