package ops_test

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/edgekv/edgekv/ops"
)

// Example wires the package the way the node runtime does: one Metrics,
// the request wrapper around the API handler, /metrics and /debug/pprof/
// mounted, then records what the Raft loop would.
func Example() {
	m := ops.NewMetrics()
	api := func(ctx *fasthttp.RequestCtx) {
		switch path := string(ctx.Path()); {
		case path == "/metrics":
			m.MetricsHandler(ctx)
		case strings.HasPrefix(path, "/debug/pprof"):
			ops.PprofHandler(ctx)
		default:
			ctx.SetStatusCode(fasthttp.StatusOK)
		}
	}
	handler := m.Middleware(api) // what fasthttp.Server.Handler gets

	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("GET")
	ctx.Request.SetRequestURI("/v1/kv/greeting")
	handler(&ctx)

	m.SetRaftState(3, 10, 10, true, true)
	m.AddPeer("n2").SetLag(4)

	var b bytes.Buffer
	m.WritePrometheus(&b)
	sc := bufio.NewScanner(&b)
	for sc.Scan() {
		line := sc.Text()
		if line == `edgekv_http_requests_total{endpoint="kv_get",code="200"} 1` ||
			strings.HasPrefix(line, "edgekv_raft_term ") ||
			strings.HasPrefix(line, "edgekv_replication_lag_entries{") {
			fmt.Println(line)
		}
	}
	// Output:
	// edgekv_http_requests_total{endpoint="kv_get",code="200"} 1
	// edgekv_raft_term 3
	// edgekv_replication_lag_entries{peer="n2"} 4
}
