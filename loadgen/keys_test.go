package loadgen

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestKeySpaceNamesFixedWidthKeys(t *testing.T) {
	ks, err := newKeySpace("p/", 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		i          uint64
		key, path  string
		jsonInside string
	}{
		{0, "p/000", "p%2F000", "p/000"},
		{7, "p/007", "p%2F007", "p/007"},
		{999, "p/999", "p%2F999", "p/999"},
	} {
		if got := ks.key(c.i); got != c.key {
			t.Errorf("key(%d) = %q, want %q", c.i, got, c.key)
		}
		if got := string(ks.appendPath(nil, c.i)); got != c.path {
			t.Errorf("appendPath(%d) = %q, want %q", c.i, got, c.path)
		}
		if got := string(ks.appendJSON(nil, c.i)); got != c.jsonInside {
			t.Errorf("appendJSON(%d) = %q, want %q", c.i, got, c.jsonInside)
		}
	}
	if one, _ := newKeySpace("", 1); one.key(0) != "0" {
		t.Errorf("key space of one key: %q", one.key(0))
	}
}

func TestKeySpaceRejectsBadInput(t *testing.T) {
	for _, c := range []struct {
		prefix string
		count  uint64
	}{
		{"x", 0},
		{"\xc3", 10},
		{strings.Repeat("k", maxKeyBytes), 1},
		{strings.Repeat("k", maxKeyBytes-2), 1000},
	} {
		if _, err := newKeySpace(c.prefix, c.count); err == nil {
			t.Errorf("newKeySpace(%d-byte prefix, %d) accepted", len(c.prefix), c.count)
		}
	}
	if _, err := newKeySpace(strings.Repeat("k", maxKeyBytes-3), 1000); err != nil {
		t.Errorf("a key of exactly %d bytes refused: %v", maxKeyBytes, err)
	}
}

func TestBatchBodyBytesBoundsBody(t *testing.T) {
	ks, err := newKeySpace(`a"b\c`+"\x01é", 12345)
	if err != nil {
		t.Fatal(err)
	}
	keys := []uint64{0, 12344, 77}
	vals := [][]byte{{}, bytes.Repeat([]byte{0xff}, 10), []byte("hello")}
	body := appendBatchBody(nil, &ks, keys, vals)
	if bound := batchBodyBytes(&ks, len(keys), 10); len(body) > bound {
		t.Fatalf("body of %d bytes over its computed bound %d", len(body), bound)
	}
	var parsed struct {
		Ops []struct{ Op, Key, Value string }
	}
	if err := json.Unmarshal(body, &parsed); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	for j, op := range parsed.Ops {
		v, err := base64.StdEncoding.DecodeString(op.Value)
		if op.Op != "put" || op.Key != ks.key(keys[j]) || err != nil || !bytes.Equal(v, vals[j]) {
			t.Fatalf("op %d = %+v", j, op)
		}
	}
}

// FuzzPathEscape: any key survives percent-encoding, and the encoding
// leaves nothing a server or proxy could read as path structure.
func FuzzPathEscape(f *testing.F) {
	for _, s := range []string{"", "a", "a/b", "%2F", "?x=1#f", "é日本", " ", "\x00\xff", "../.."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		esc := string(appendPathEscaped(nil, s))
		if strings.ContainsAny(esc, "/?#") {
			t.Fatalf("escaped %q to %q, which has path syntax", s, esc)
		}
		back, err := url.PathUnescape(esc)
		if err != nil || back != s {
			t.Fatalf("escaped %q to %q, which decodes to %q (%v)", s, esc, back, err)
		}
		if !utf8.ValidString(s) || len(s)+1 > maxKeyBytes {
			return
		}
		// The JSON form of a key must decode back to the key too.
		ks, err := newKeySpace(s, 2)
		if err != nil {
			t.Fatalf("newKeySpace(%q): %v", s, err)
		}
		var decoded string
		quoted := append(append([]byte{'"'}, ks.appendJSON(nil, 1)...), '"')
		if err := json.Unmarshal(quoted, &decoded); err != nil || decoded != s+"1" {
			t.Fatalf("JSON key %s decodes to %q (%v)", quoted, decoded, err)
		}
	})
}

// FuzzParseFlags: any command line gives a Config or an error, never a
// panic, and an accepted Config validates.
func FuzzParseFlags(f *testing.F) {
	for _, s := range []string{
		"--concurrency\x00-1", "--rate\x001e308", "--endpoints\x00http://a:1,,b:2", "--workload\x00batch\x00--batch-size\x0099999",
		"--key-space\x0018446744073709551615", "--key-prefix\x00\xff", "--value-size\x0016777216\x00--workload\x00batch",
		"--duration\x000s\x00--requests\x000", "--help",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, joined string) {
		args := strings.Split(joined, "\x00")
		cfg, _, err := ParseFlags(args, io.Discard)
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("ParseFlags(%q) returned a Config that does not validate: %v", args, err)
		}
		if _, err := newPlan(cfg); err != nil {
			t.Fatalf("ParseFlags(%q) accepted a Config newPlan refuses: %v", args, err)
		}
	})
}
