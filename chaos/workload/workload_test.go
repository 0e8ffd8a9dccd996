package workload

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/edgekv/edgekv/chaos/history"
)

// scripted answers every request with the handler's answer for it.
func scripted(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func oneClient(addr string, cfg Config) (*client, *history.Recorder) {
	rec := history.NewRecorder(1, 8)
	cfg.Addrs = []string{addr}
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Second
	}
	cfg.Groups, cfg.KeysPerGroup = 1, 3
	return newClient(0, cfg, rec.Client(0), &Anomalies{}), rec
}

func TestOutcomes(t *testing.T) {
	var status int
	var body string
	var headers map[string]string
	addr := scripted(t, func(w http.ResponseWriter, r *http.Request) {
		for k, v := range headers {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		w.Write([]byte(body))
	})
	ctx := context.Background()
	cases := []struct {
		name      string
		status    int
		body      string
		headers   map[string]string
		cfg       Config
		do        func(c *client)
		want      history.Outcome
		anomalies int
		check     func(t *testing.T, o history.Op)
	}{
		{name: "put ok", status: 200, body: `{"revision":7}`, do: func(c *client) { c.put(ctx, addr, "g0/k0", history.Cond{}) },
			want: history.OK, check: func(t *testing.T, o history.Op) {
				if o.Rev != 7 {
					t.Errorf("rev %d", o.Rev)
				}
			}},
		{name: "put 503 refused", status: 503, body: `{"code":"unavailable"}`, do: func(c *client) { c.put(ctx, addr, "g0/k0", history.Cond{}) },
			want: history.Fail},
		{name: "put 503 unknown when asked", status: 503, cfg: Config{UnavailableWriteIsUnknown: true},
			do: func(c *client) { c.put(ctx, addr, "g0/k0", history.Cond{}) }, want: history.Unknown},
		{name: "put 504", status: 504, do: func(c *client) { c.put(ctx, addr, "g0/k0", history.Cond{}) }, want: history.Unknown},
		{name: "put 200 bad body", status: 200, body: `nope`, do: func(c *client) { c.put(ctx, addr, "g0/k0", history.Cond{}) },
			want: history.Unknown, anomalies: 1},
		{name: "put 200 revision 0", status: 200, body: `{"revision":0}`, do: func(c *client) { c.put(ctx, addr, "g0/k0", history.Cond{}) },
			want: history.Unknown, anomalies: 1},
		{name: "put 500", status: 500, do: func(c *client) { c.put(ctx, addr, "g0/k0", history.Cond{}) }, want: history.Unknown, anomalies: 1},
		{name: "get ok", status: 200, body: "v", headers: map[string]string{"ETag": `"5"`, "X-Edgekv-Revision": "9"},
			do: func(c *client) { c.get(ctx, addr, "g0/k0", history.Lease) }, want: history.OK,
			check: func(t *testing.T, o history.Op) {
				if !o.Found || o.ReadValue != "v" || o.Rev != 5 || o.StoreRev != 9 || o.Consistency != history.Lease {
					t.Errorf("%+v", o)
				}
			}},
		{name: "get without etag", status: 200, body: "v", do: func(c *client) { c.get(ctx, addr, "g0/k0", history.Linearizable) },
			want: history.OK, anomalies: 1},
		{name: "get absent", status: 404, do: func(c *client) { c.get(ctx, addr, "g0/k0", history.Linearizable) }, want: history.OK,
			check: func(t *testing.T, o history.Op) {
				if o.Found {
					t.Error("found")
				}
			}},
		{name: "batch 412", status: 412, body: `{"code":"precondition_failed","failed":[1]}`, do: func(c *client) { c.batch(ctx, addr, 0) },
			want: history.Fail, check: func(t *testing.T, o history.Op) {
				if len(o.Failed) != 1 || o.Failed[0] != 1 || len(o.Ops) < 2 {
					t.Errorf("%+v", o)
				}
			}},
		{name: "list", status: 200, body: `{"items":[{"key":"g0/k1","value":"YWI=","revision":3}],"more":true,"revision":8}`,
			do: func(c *client) { c.list(ctx, addr, 0) }, want: history.OK, check: func(t *testing.T, o history.Op) {
				if len(o.Items) != 1 || o.Items[0] != (history.Item{Key: "g0/k1", Value: "ab", Rev: 3}) || !o.More || o.StoreRev != 8 {
					t.Errorf("%+v", o)
				}
			}},
		{name: "delete 404", status: 404, do: func(c *client) { c.del(ctx, addr, "g0/k0", history.Cond{}) }, want: history.Fail},
		{name: "delete prefix", status: 200, body: `{"revision":4,"deleted":2}`, do: func(c *client) { c.deletePrefix(ctx, addr, 0) },
			want: history.OK, check: func(t *testing.T, o history.Op) {
				if o.Rev != 4 || o.Deleted != 2 || o.Prefix != "g0/" {
					t.Errorf("%+v", o)
				}
			}},
		{name: "put 400 is an anomaly", status: 400, do: func(c *client) { c.put(ctx, addr, "g0/k0", history.Cond{}) },
			want: history.Fail, anomalies: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body, headers = tc.status, tc.body, tc.headers
			c, rec := oneClient(addr, tc.cfg)
			defer c.close()
			tc.do(c)
			h := rec.History()
			if len(h) != 1 {
				t.Fatalf("%d ops", len(h))
			}
			if h[0].Outcome != tc.want {
				t.Errorf("outcome %s, want %s (%s)", h[0].Outcome, tc.want, h[0].String())
			}
			if n := c.anomalies.Count(); n != tc.anomalies {
				t.Errorf("%d anomalies, want %d: %s", n, tc.anomalies, c.anomalies)
			}
			if tc.check != nil {
				tc.check(t, h[0])
			}
		})
	}
}

// A refused dial proves the request never left: Fail. A server that
// accepts and never answers leaves the outcome Unknown.
func TestNoAnswer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	ln.Close()
	c, rec := oneClient(closedAddr, Config{})
	c.put(context.Background(), closedAddr, "g0/k0", history.Cond{})
	if h := rec.History(); h[0].Outcome != history.Fail {
		t.Errorf("refused dial: %s", h[0].String())
	}

	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			conn, err := silent.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	c, rec = oneClient(silent.Addr().String(), Config{Timeout: 200 * time.Millisecond})
	c.put(context.Background(), silent.Addr().String(), "g0/k0", history.Cond{})
	if h := rec.History(); h[0].Outcome != history.Unknown {
		t.Errorf("silent server: %s", h[0].String())
	}
}

// Values are unique across clients and requests; keys stay in the key set.
func TestRunRecordsValidHistory(t *testing.T) {
	addr := scripted(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case "GET":
			w.WriteHeader(404)
		default:
			w.Write([]byte(`{"revision":1}`))
		}
	})
	rec := history.NewRecorder(3, 64)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	an := Run(ctx, Config{Addrs: []string{addr}, Clients: 3, Groups: 2, KeysPerGroup: 3, Timeout: time.Second, Seed: 1}, rec)
	h := rec.History()
	if len(h) < 10 {
		t.Fatalf("only %d ops", len(h))
	}
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	for _, k := range Keys(2, 3) {
		keys[k] = true
	}
	for _, o := range h {
		for _, k := range o.Keys() {
			if !keys[k] {
				t.Fatalf("key %q outside the key set", k)
			}
		}
	}
	// The fake answers a list with 404, outside the contract: noted.
	lists := 0
	for _, o := range h {
		if o.Kind == history.List && o.Code == 404 {
			lists++
		}
	}
	if lists > 0 && an.Count() < lists {
		t.Errorf("%d lists answered 404, %d anomalies", lists, an.Count())
	}
}
