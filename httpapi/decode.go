package httpapi

import (
	"unicode/utf8"
)

// Input decoding: keys from the raw path, query parameters, conditional
// headers. Every function here bounds its input before writing to dst and
// reports bad input as an *Error, never by panicking.

// Pre-built errors for the common bad inputs, so that rejecting them costs
// no allocation. They are never modified.
var (
	errEmptyKey      = &Error{Kind: KindBadRequest, Message: "empty key"}
	errKeyTooLong    = &Error{Kind: KindTooLarge, Message: "key longer than 4096 bytes"}
	errKeyNotUTF8    = &Error{Kind: KindBadRequest, Message: "key is not valid UTF-8"}
	errBadEscape     = &Error{Kind: KindBadRequest, Message: "malformed percent-encoding"}
	errFragment      = &Error{Kind: KindBadRequest, Message: "request target must not contain '#'"}
	errBadQuery      = &Error{Kind: KindBadRequest, Message: "malformed query string"}
	errBadIfMatch    = &Error{Kind: KindBadRequest, Message: `If-Match must be one quoted decimal revision >= 1, like "12"`}
	errBadNoneMatch  = &Error{Kind: KindBadRequest, Message: "If-None-Match must be *"}
	errBothConds     = &Error{Kind: KindBadRequest, Message: "If-Match and If-None-Match cannot be combined"}
	errBadIdemKey    = &Error{Kind: KindBadRequest, Message: "Idempotency-Key must be 1 or more visible ASCII characters"}
	errIdemKeyTooBig = &Error{Kind: KindBadRequest, Message: "Idempotency-Key is too long"}
)

// unhex returns the value of hex digit c and whether c is one.
func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// percentDecode appends the percent-decoding of src to dst. In a query
// (plusIsSpace) '+' decodes to a space as in
// application/x-www-form-urlencoded; in a path '+' is itself. A '%' not
// followed by two hex digits is an error. The caller bounds len(src).
func percentDecode(dst, src []byte, plusIsSpace bool) ([]byte, *Error) {
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch {
		case c == '%':
			if i+2 >= len(src) {
				return dst, errBadEscape
			}
			hi, ok1 := unhex(src[i+1])
			lo, ok2 := unhex(src[i+2])
			if !ok1 || !ok2 {
				return dst, errBadEscape
			}
			dst = append(dst, hi<<4|lo)
			i += 2
		case c == '+' && plusIsSpace:
			dst = append(dst, ' ')
		default:
			dst = append(dst, c)
		}
	}
	return dst, nil
}

// decodeKey appends to dst[:0] the key encoded in raw, the part of the
// request path after "/v1/kv/", exactly as sent: no path normalization,
// "%2F" and "/" are both a slash inside the key, "." and ".." segments are
// key bytes. The key must be 1..MaxKeyBytes bytes of valid UTF-8.
func decodeKey(dst, raw []byte) ([]byte, *Error) {
	dst = dst[:0]
	if len(raw) == 0 {
		return dst, errEmptyKey
	}
	if len(raw) > maxEncodedKeyBytes {
		return dst, errKeyTooLong
	}
	dst, err := percentDecode(dst, raw, false)
	if err != nil {
		return dst, err
	}
	return dst, checkKey(dst, false)
}

// checkKey validates a decoded key (or, with emptyOK, a prefix or after
// value, which may be empty).
func checkKey(key []byte, emptyOK bool) *Error {
	if len(key) == 0 && !emptyOK {
		return errEmptyKey
	}
	if len(key) > MaxKeyBytes {
		return errKeyTooLong
	}
	if !utf8.Valid(key) {
		return errKeyNotUTF8
	}
	return nil
}

// splitTarget splits a raw origin-form request target into its path and
// query string. A '#' anywhere is refused: clients never send fragments,
// and silently dropping what follows one would change the key.
func splitTarget(target []byte) (path, query []byte, err *Error) {
	for i, c := range target {
		if c == '#' {
			return nil, nil, errFragment
		}
		if c == '?' {
			path, query = target[:i], target[i+1:]
			for _, c := range query {
				if c == '#' {
					return nil, nil, errFragment
				}
			}
			return path, query, nil
		}
	}
	return target, nil, nil
}

// queryParam names, as a bit set of the parameters an endpoint accepts.
type queryParam uint8

const (
	paramPrefix queryParam = 1 << iota
	paramAfter
	paramLimit
	paramConsistency
)

// queryArgs holds a decoded query string. prefix and after are decoded
// into buffers owned by the caller's scratch space.
type queryArgs struct {
	seen        queryParam
	prefix      []byte
	after       []byte
	limit       int
	consistency Consistency
}

// parseQuery decodes query into q, accepting only the parameters in
// allowed; unknown, repeated or malformed parameters are errors (a typo
// such as "limt=5" must not silently list 100 keys). q.prefix and q.after
// are appended to the given buffers.
func parseQuery(q *queryArgs, query []byte, allowed queryParam, prefixBuf, afterBuf []byte) *Error {
	*q = queryArgs{prefix: prefixBuf[:0], after: afterBuf[:0], limit: DefaultListLimit}
	for len(query) > 0 {
		var pair []byte
		pair, query = cutByte(query, '&')
		if len(pair) == 0 {
			continue // "a=1&&b=2" and a trailing '&' are harmless
		}
		name, value := cutByte(pair, '=')
		var p queryParam
		switch string(name) {
		case "prefix":
			p = paramPrefix
		case "after":
			p = paramAfter
		case "limit":
			p = paramLimit
		case "consistency":
			p = paramConsistency
		default:
			return Errorf(KindBadRequest, "unknown query parameter %q", truncate(name))
		}
		if p&allowed == 0 {
			return Errorf(KindBadRequest, "query parameter %q is not accepted here", name)
		}
		if q.seen&p != 0 {
			return Errorf(KindBadRequest, "query parameter %q given twice", name)
		}
		q.seen |= p
		var err *Error
		switch p {
		case paramPrefix:
			q.prefix, err = decodeQueryKey(q.prefix, value)
		case paramAfter:
			q.after, err = decodeQueryKey(q.after, value)
		case paramLimit:
			q.limit, err = parseLimit(value)
		case paramConsistency:
			q.consistency, err = parseConsistency(value)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// decodeQueryKey decodes a prefix or after value (may be empty).
func decodeQueryKey(dst, raw []byte) ([]byte, *Error) {
	if len(raw) > maxEncodedKeyBytes {
		return dst, errKeyTooLong
	}
	dst, err := percentDecode(dst, raw, true)
	if err != nil {
		return dst, err
	}
	return dst, checkKey(dst, true)
}

var errBadLimit = &Error{Kind: KindBadRequest, Message: "limit must be a decimal integer from 1 to 1000"}

// parseLimit parses ?limit=, 1..MaxListLimit, plain decimal digits only.
func parseLimit(raw []byte) (int, *Error) {
	if len(raw) == 0 || len(raw) > 4 {
		return 0, errBadLimit
	}
	n := 0
	for _, c := range raw {
		if c < '0' || c > '9' {
			return 0, errBadLimit
		}
		n = n*10 + int(c-'0')
	}
	if n < 1 || n > MaxListLimit {
		return 0, errBadLimit
	}
	return n, nil
}

var errBadConsistency = &Error{Kind: KindBadRequest, Message: "consistency must be linearizable, lease or stale"}

func parseConsistency(raw []byte) (Consistency, *Error) {
	switch string(raw) {
	case "linearizable":
		return Linearizable, nil
	case "lease":
		return Lease, nil
	case "stale":
		return Stale, nil
	}
	return 0, errBadConsistency
}

// parseIfMatch parses an If-Match header value: exactly one quoted
// canonical decimal revision >= 1 ("12"). Weak tags, lists and * are refused: a condition we
// do not understand must not turn into an unconditional write.
func parseIfMatch(v []byte) (uint64, *Error) {
	v = trimOWS(v)
	if len(v) < 3 || v[0] != '"' || v[len(v)-1] != '"' {
		return 0, errBadIfMatch
	}
	digits := v[1 : len(v)-1]
	// Canonical decimal only (as this server's ETags are): no sign, no
	// leading zero (which also refuses revision 0), at most 20 digits.
	if len(digits) > 20 || digits[0] == '0' {
		return 0, errBadIfMatch
	}
	var n uint64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, errBadIfMatch
		}
		d := uint64(c - '0')
		if n > (^uint64(0)-d)/10 {
			return 0, errBadIfMatch // overflows uint64
		}
		n = n*10 + d
	}
	return n, nil
}

// parseIfNoneMatch accepts exactly "*".
func parseIfNoneMatch(v []byte) *Error {
	v = trimOWS(v)
	if len(v) != 1 || v[0] != '*' {
		return errBadNoneMatch
	}
	return nil
}

// checkIdempotencyKey validates an Idempotency-Key header value: 1..max
// visible ASCII characters (0x21..0x7e).
func checkIdempotencyKey(v []byte, maxBytes int) *Error {
	if len(v) == 0 {
		return errBadIdemKey
	}
	if len(v) > maxBytes {
		return errIdemKeyTooBig
	}
	for _, c := range v {
		if c < 0x21 || c > 0x7e {
			return errBadIdemKey
		}
	}
	return nil
}

func trimOWS(v []byte) []byte {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

func cutByte(b []byte, sep byte) (before, after []byte) {
	for i, c := range b {
		if c == sep {
			return b[:i], b[i+1:]
		}
	}
	return b, nil
}

// truncate bounds client-supplied bytes quoted in an error message or log.
func truncate(b []byte) []byte {
	const maxQuoted = 64
	if len(b) > maxQuoted {
		return b[:maxQuoted]
	}
	return b
}
