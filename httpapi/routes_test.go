package httpapi

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestExtraRoutes(t *testing.T) {
	h := newHarness(t, Config{})
	h.api.Handle("/v1/cluster", func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("cluster") })
	h.api.HandlePrefix("/debug/pprof/", func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("pprof") })
	if resp := h.do("GET", "/v1/cluster", nil, ""); string(resp.Body()) != "cluster" {
		t.Errorf("exact route: %d %q", resp.StatusCode(), resp.Body())
	}
	if resp := h.do("GET", "/debug/pprof/heap", nil, ""); string(resp.Body()) != "pprof" {
		t.Errorf("prefix route: %d %q", resp.StatusCode(), resp.Body())
	}
	wantError(t, h.do("GET", "/v1/cluster/x", nil, ""), 404, "not_found")

	for _, p := range []string{"/v1/kv", "/v1/kv/x", "/v1/batch", "/healthz", "/readyz"} {
		if !panics(func() { h.api.Handle(p, nil) }) {
			t.Errorf("Handle(%q) did not refuse a KV path", p)
		}
	}
	for _, p := range []string{"", "/", "/v1/", "/v1/kv/"} {
		if !panics(func() { h.api.HandlePrefix(p, nil) }) {
			t.Errorf("HandlePrefix(%q) did not refuse a prefix overlapping the KV API", p)
		}
	}
	if !panics(func() { h.api.Handle("/v1/cluster", nil) }) {
		t.Errorf("duplicate Handle accepted")
	}
}

func panics(f func()) (did bool) {
	defer func() { did = recover() != nil }()
	f()
	return false
}

func TestNewRefusesBadConfig(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	be := newMemBackend()
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"negative value limit", Config{MaxValueBytes: -1}, "MaxValueBytes"},
		{"negative txn ops", Config{MaxTxnOps: -5}, "MaxTxnOps"},
		{"read buffer too small", Config{ReadBufferBytes: 4096}, "ReadBufferBytes"},
		{"negative timeout", Config{ReadTimeout: -1}, "ReadTimeout"},
	}
	for _, c := range cases {
		if _, err := New(c.cfg, be, log); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want one naming %s", c.name, err, c.want)
		}
	}
	if _, err := New(Config{}, nil, log); err == nil {
		t.Errorf("nil backend accepted")
	}
	if _, err := New(Config{}, be, nil); err == nil {
		t.Errorf("nil logger accepted")
	}
	api, err := New(Config{}, be, log)
	if err != nil {
		t.Fatal(err)
	}
	s := api.Server()
	if s.ReadBufferSize != 32<<10 || s.MaxRequestBodySize != 4<<20 || !s.DisablePreParseMultipartForm ||
		s.ReadTimeout <= 0 || s.WriteTimeout <= 0 || s.IdleTimeout <= 0 || s.ErrorHandler == nil || s.HeaderReceived == nil {
		t.Errorf("server not configured: %+v", s)
	}
}
