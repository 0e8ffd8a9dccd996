package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Batch body parsing (POST /v1/batch). The body is bounded by
// Config.MaxRequestBytes before it reaches here; ops are decoded one at a
// time so that a batch over Config.MaxTxnOps is refused as soon as its
// op MaxTxnOps+1 starts, before it is decoded.
//
//	{"ops":[{"op":"put","key":"a","value":"<base64>","if_match":12},
//	        {"op":"delete","key":"b"},
//	        {"op":"put","key":"c","value":"...","if_absent":true}]}

// batchOpJSON is one op as sent. Unknown fields are refused.
type batchOpJSON struct {
	Op       string     `json:"op"`
	Key      strictText `json:"key"`
	Value    *string    `json:"value"`
	IfMatch  *uint64    `json:"if_match"`
	IfAbsent bool       `json:"if_absent"`
}

// strictText is a JSON string decoded strictly: encoding/json silently
// turns invalid UTF-8 and lone surrogate escapes into U+FFFD, which would
// change a key without telling the client; strictText refuses both.
type strictText struct {
	b   []byte
	set bool
}

var errKeyNotString = errors.New("key must be a JSON string")

func (s *strictText) UnmarshalJSON(raw []byte) error {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return errKeyNotString
	}
	b, err := unquoteStrict(s.b[:0], raw[1:len(raw)-1])
	if err != nil {
		return err
	}
	s.b, s.set = b, true
	return nil
}

var (
	errBadStringEscape = errors.New("malformed escape in JSON string")
	errLoneSurrogate   = errors.New("JSON string has a lone UTF-16 surrogate")
	errStringNotUTF8   = errors.New("JSON string is not valid UTF-8")
)

// unquoteStrict appends the decoding of the inside of a JSON string
// (encoding/json has already checked its syntax) to dst.
func unquoteStrict(dst, s []byte) ([]byte, error) {
	if !utf8.Valid(s) {
		return dst, errStringNotUTF8
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			if c < 0x20 {
				return dst, errBadStringEscape
			}
			dst = append(dst, c)
			continue
		}
		if i+1 >= len(s) {
			return dst, errBadStringEscape
		}
		i++
		switch s[i] {
		case '"', '\\', '/':
			dst = append(dst, s[i])
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(s[i+1:])
			if !ok {
				return dst, errBadStringEscape
			}
			i += 4
			if utf16.IsSurrogate(r) {
				// Must be a high surrogate followed by \u and a low one.
				if r >= 0xdc00 || i+6 >= len(s) || s[i+1] != '\\' || s[i+2] != 'u' {
					return dst, errLoneSurrogate
				}
				r2, ok := hex4(s[i+3:])
				if !ok {
					return dst, errBadStringEscape
				}
				r = utf16.DecodeRune(r, r2)
				if r == utf8.RuneError {
					return dst, errLoneSurrogate
				}
				i += 6
			}
			dst = utf8.AppendRune(dst, r)
		default:
			return dst, errBadStringEscape
		}
	}
	return dst, nil
}

func hex4(s []byte) (rune, bool) {
	if len(s) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range s[:4] {
		v, ok := unhex(c)
		if !ok {
			return 0, false
		}
		r = r<<4 | rune(v)
	}
	return r, true
}

// batchLimits are the limits parseBatch enforces.
type batchLimits struct {
	maxOps        int
	maxValueBytes int
}

// parseBatch decodes a batch body into ops (appended to dst[:0]). It
// checks everything the Backend may rely on: op kinds, key validity,
// value sizes, condition combinations, distinct keys.
func parseBatch(dst []BatchOp, body []byte, lim batchLimits) ([]BatchOp, *Error) {
	ops := dst[:0]
	if !utf8.Valid(body) {
		return ops, &Error{Kind: KindBadRequest, Message: "batch body is not valid UTF-8"}
	}
	if fast, ok := parseBatchFast(dst, body, lim); ok {
		return fast, nil
	}
	return parseBatchSlow(dst, body, lim)
}

// parseBatchSlow is parseBatch with encoding/json: any JSON, and the
// wording of every refusal.
func parseBatchSlow(dst []BatchOp, body []byte, lim batchLimits) ([]BatchOp, *Error) {
	ops := dst[:0]
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	bad := func(format string, args ...any) *Error { return Errorf(KindBadRequest, "batch: "+format, args...) }

	if err := expectDelim(dec, '{'); err != nil {
		return ops, bad("body must be a JSON object: %v", err)
	}
	sawOps := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return ops, bad("%v", err)
		}
		if name, _ := tok.(string); name != "ops" {
			return ops, bad("unknown field %q", tok)
		}
		if sawOps {
			return ops, bad(`field "ops" given twice`)
		}
		sawOps = true
		if err := expectDelim(dec, '['); err != nil {
			return ops, bad(`"ops" must be an array: %v`, err)
		}
		for dec.More() {
			if len(ops) == lim.maxOps {
				return ops, Errorf(KindTooLarge, "batch has more than %d ops", lim.maxOps)
			}
			var in batchOpJSON
			if err := dec.Decode(&in); err != nil {
				return ops, bad("op %d: %v", len(ops), err)
			}
			op, e := convertOp(&in, len(ops), lim)
			if e != nil {
				return ops, e
			}
			ops = append(ops, op)
		}
		if err := expectDelim(dec, ']'); err != nil {
			return ops, bad("%v", err)
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return ops, bad("%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return ops, bad("trailing data after the JSON object")
	}
	if !sawOps {
		return ops, bad(`missing field "ops"`)
	}
	if len(ops) == 0 {
		return ops, bad(`"ops" is empty`)
	}
	seen := make(map[string]int, len(ops))
	for i := range ops {
		if j, dup := seen[string(ops[i].Key)]; dup {
			return ops, bad("ops %d and %d name the same key", j, i)
		}
		seen[string(ops[i].Key)] = i
	}
	return ops, nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return errors.New("expected " + want.String())
	}
	return nil
}

// convertOp validates one decoded op; i is its index for messages.
func convertOp(in *batchOpJSON, i int, lim batchLimits) (BatchOp, *Error) {
	var op BatchOp
	bad := func(format string, args ...any) *Error {
		return Errorf(KindBadRequest, "batch: op %d: "+format, append([]any{i}, args...)...)
	}
	switch in.Op {
	case "put":
		op.Kind = OpPut
	case "delete":
		op.Kind = OpDelete
	case "":
		return op, bad(`missing "op"`)
	default:
		return op, bad(`unknown op %q (want "put" or "delete")`, truncate([]byte(in.Op)))
	}
	if !in.Key.set {
		return op, bad(`missing "key"`)
	}
	if e := checkKey(in.Key.b, false); e != nil {
		return op, &Error{Kind: e.Kind, Message: "batch: op " + strconv.Itoa(i) + ": " + e.Message}
	}
	op.Key = in.Key.b
	if in.IfMatch != nil {
		if *in.IfMatch == 0 {
			return op, bad(`"if_match" must be a revision >= 1`)
		}
		op.IfMatch = *in.IfMatch
	}
	op.IfAbsent = in.IfAbsent
	if op.IfMatch != 0 && op.IfAbsent {
		return op, bad(`"if_match" and "if_absent" cannot be combined`)
	}
	switch op.Kind {
	case OpPut:
		if in.Value == nil {
			return op, bad(`put needs "value" (base64)`)
		}
		enc := *in.Value
		if len(enc) > base64.StdEncoding.EncodedLen(lim.maxValueBytes) {
			return op, Errorf(KindTooLarge, "batch: op %d: value larger than %d bytes", i, lim.maxValueBytes)
		}
		v, err := base64.StdEncoding.DecodeString(enc)
		if err != nil {
			return op, bad(`"value" is not standard base64: %v`, err)
		}
		if len(v) > lim.maxValueBytes {
			return op, Errorf(KindTooLarge, "batch: op %d: value larger than %d bytes", i, lim.maxValueBytes)
		}
		op.Value = v
	case OpDelete:
		if in.Value != nil {
			return op, bad(`delete takes no "value"`)
		}
		if op.IfAbsent {
			return op, bad(`delete takes no "if_absent"`)
		}
	}
	return op, nil
}
