package loadgen

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// maxKeyBytes is SPEC §2's upper bound on a key.
const maxKeyBytes = 4096

// keySpace names the keys a run touches: prefix followed by the key's
// index in [0, count), zero-padded to a fixed width so that every key has
// the same length (and a lexical scan visits them in index order).
//
// The prefix is escaped once, both for a URL path and for a JSON string,
// so that building a request only appends digits: no allocation and no
// per-request escaping on the hot path.
type keySpace struct {
	count       uint64
	digits      int    // width of the zero-padded index
	pathPrefix  []byte // prefix, percent-encoded for a path segment
	jsonPrefix  []byte // prefix, escaped for the inside of a JSON string
	plainPrefix string
}

func newKeySpace(prefix string, count uint64) (keySpace, error) {
	if count == 0 {
		return keySpace{}, fmt.Errorf("key space must hold at least one key")
	}
	if !utf8.ValidString(prefix) {
		return keySpace{}, fmt.Errorf("key prefix %q is not valid UTF-8", prefix)
	}
	digits := len(strconv.FormatUint(count-1, 10))
	if len(prefix)+digits > maxKeyBytes {
		return keySpace{}, fmt.Errorf("key prefix of %d bytes plus %d digits passes the %d-byte key limit", len(prefix), digits, maxKeyBytes)
	}
	quoted, err := json.Marshal(prefix)
	if err != nil {
		return keySpace{}, fmt.Errorf("escaping key prefix for JSON: %w", err)
	}
	return keySpace{
		count:       count,
		digits:      digits,
		pathPrefix:  appendPathEscaped(nil, prefix),
		jsonPrefix:  quoted[1 : len(quoted)-1],
		plainPrefix: prefix,
	}, nil
}

// key returns key number i as a string; for tests and reports, not the
// hot path.
func (ks *keySpace) key(i uint64) string {
	return ks.plainPrefix + string(ks.appendIndex(nil, i))
}

// appendPath appends key i, percent-encoded for a URL path.
func (ks *keySpace) appendPath(dst []byte, i uint64) []byte {
	return ks.appendIndex(append(dst, ks.pathPrefix...), i)
}

// appendJSON appends key i as the inside of a JSON string (no quotes).
func (ks *keySpace) appendJSON(dst []byte, i uint64) []byte {
	return ks.appendIndex(append(dst, ks.jsonPrefix...), i)
}

func (ks *keySpace) appendIndex(dst []byte, i uint64) []byte {
	if i >= ks.count {
		panic(fmt.Sprintf("loadgen: key index %d outside key space of %d", i, ks.count))
	}
	var digits [20]byte
	n := strconv.AppendUint(digits[:0], i, 10)
	for pad := ks.digits - len(n); pad > 0; pad-- {
		dst = append(dst, '0')
	}
	return append(dst, n...)
}

// appendPathEscaped percent-encodes s for use as one path segment: every
// byte except RFC 3986's unreserved characters is escaped, so a '/' in a
// key becomes %2F (SPEC §2: a slash inside the key) and nothing is left
// for a server or proxy to normalize.
func appendPathEscaped(dst []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isUnreserved(c) {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', hex[c>>4], hex[c&15])
	}
	return dst
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// appendBatchBody appends a PutAll body (SPEC §2, POST /v1/batch) with one
// put per key index; values[j] is the raw value of the j-th op.
//
//	{"ops":[{"op":"put","key":"<key>","value":"<base64>"},...]}
func appendBatchBody(dst []byte, ks *keySpace, keys []uint64, values [][]byte) []byte {
	if len(keys) != len(values) {
		panic(fmt.Sprintf("loadgen: batch of %d keys with %d values", len(keys), len(values)))
	}
	dst = append(dst, `{"ops":[`...)
	for j, k := range keys {
		if j > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"op":"put","key":"`...)
		dst = ks.appendJSON(dst, k)
		dst = append(dst, `","value":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, values[j])
		dst = append(dst, `"}`...)
	}
	return append(dst, "]}"...)
}

// batchBodyBytes bounds the size of a batch body, for sizing its buffer
// once and for refusing configurations whose bodies would be absurd.
func batchBodyBytes(ks *keySpace, batchSize, valueBytes int) int {
	perOp := len(`{"op":"put","key":"","value":""},`) + len(ks.jsonPrefix) + ks.digits +
		base64.StdEncoding.EncodedLen(valueBytes)
	return len(`{"ops":[]}`) + batchSize*perOp
}
