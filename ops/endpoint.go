package ops

import "bytes"

// Endpoint is the small-integer class of a request, the first index of
// the request-metrics table.
type Endpoint uint8

// Endpoints of SPEC §2. Values index arrays; EndpointOther is the catch-all
// (unknown paths, wrong methods).
const (
	EndpointKVGet        Endpoint = iota // GET /v1/kv/<key>
	EndpointKVPut                        // PUT /v1/kv/<key>
	EndpointKVDelete                     // DELETE /v1/kv/<key>
	EndpointList                         // GET /v1/kv?prefix=
	EndpointDeletePrefix                 // DELETE /v1/kv?prefix=
	EndpointBatch                        // POST /v1/batch
	EndpointCluster                      // /v1/cluster and /v1/cluster/...
	EndpointSnapshot                     // GET /v1/snapshot
	EndpointMetrics                      // GET /metrics
	EndpointHealth                       // /healthz, /readyz
	EndpointDebug                        // /debug/pprof/...
	EndpointOther                        // anything else
	numEndpoints
)

var endpointNames = [numEndpoints]string{
	EndpointKVGet:        "kv_get",
	EndpointKVPut:        "kv_put",
	EndpointKVDelete:     "kv_delete",
	EndpointList:         "list",
	EndpointDeletePrefix: "delete_prefix",
	EndpointBatch:        "batch",
	EndpointCluster:      "cluster",
	EndpointSnapshot:     "snapshot",
	EndpointMetrics:      "metrics",
	EndpointHealth:       "health",
	EndpointDebug:        "debug",
	EndpointOther:        "other",
}

// String returns the endpoint's label value.
func (e Endpoint) String() string {
	if e >= numEndpoints {
		return "invalid"
	}
	return endpointNames[e]
}

// ClassifyRequest maps a method and a raw request target (as sent on the
// request line: origin form "/v1/kv/a%2Fb?x=1" or absolute form
// "http://host/v1/kv/x") to its endpoint. It reads the bytes in place:
// no decoding, no allocation.
func ClassifyRequest(method, target []byte) Endpoint {
	path := targetPath(target)
	switch {
	case bytes.HasPrefix(path, pathKVSlash):
		switch string(method) {
		case "GET", "HEAD":
			return EndpointKVGet
		case "PUT":
			return EndpointKVPut
		case "DELETE":
			return EndpointKVDelete
		}
	case bytes.Equal(path, pathKV):
		switch string(method) {
		case "GET", "HEAD":
			return EndpointList
		case "DELETE":
			return EndpointDeletePrefix
		}
	case bytes.Equal(path, pathBatch):
		if string(method) == "POST" {
			return EndpointBatch
		}
	case bytes.Equal(path, pathCluster) || bytes.HasPrefix(path, pathClusterSlash):
		return EndpointCluster
	case bytes.Equal(path, pathSnapshot):
		return EndpointSnapshot
	case bytes.Equal(path, pathMetrics):
		return EndpointMetrics
	case bytes.Equal(path, pathHealthz) || bytes.Equal(path, pathReadyz):
		return EndpointHealth
	case bytes.HasPrefix(path, pathDebug):
		return EndpointDebug
	}
	return EndpointOther
}

var (
	pathKV           = []byte("/v1/kv")
	pathKVSlash      = []byte("/v1/kv/")
	pathBatch        = []byte("/v1/batch")
	pathCluster      = []byte("/v1/cluster")
	pathClusterSlash = []byte("/v1/cluster/")
	pathSnapshot     = []byte("/v1/snapshot")
	pathMetrics      = []byte("/metrics")
	pathHealthz      = []byte("/healthz")
	pathReadyz       = []byte("/readyz")
	pathDebug        = []byte("/debug/")
	schemeSep        = []byte("://")
)

// targetPath returns the path of a raw request target, without query or
// fragment, and without "scheme://host" in absolute form.
func targetPath(target []byte) []byte {
	if len(target) > 0 && target[0] != '/' {
		if i := bytes.Index(target, schemeSep); i >= 0 {
			rest := target[i+len(schemeSep):]
			j := bytes.IndexByte(rest, '/')
			if j < 0 {
				return nil
			}
			target = rest[j:]
		}
	}
	if i := bytes.IndexAny(target, "?#"); i >= 0 {
		target = target[:i]
	}
	return target
}

// statusIndex is the second index of the request-metrics table: the exact
// codes SPEC §2 names (plus the ones fasthttp and the pprof and cluster
// handlers produce) each get a series; anything else falls into its class.
type statusIndex uint8

var statusCodes = [...]int{200, 201, 204, 304, 400, 404, 405, 409, 412, 413, 429, 500, 503, 504, 507}

const numExactStatuses = len(statusCodes)

const (
	statusOther1xx = statusIndex(numExactStatuses + iota)
	statusOther2xx
	statusOther3xx
	statusOther4xx
	statusOther5xx
	statusInvalid // outside 100..599
	numStatuses
)

func statusLabel(i statusIndex) string {
	if int(i) < numExactStatuses {
		return itoa3(statusCodes[i])
	}
	return [...]string{"1xx", "2xx", "3xx", "4xx", "5xx", "invalid"}[int(i)-numExactStatuses]
}

func itoa3(code int) string {
	return string([]byte{byte('0' + code/100), byte('0' + code/10%10), byte('0' + code%10)})
}

// indexOfStatus maps a status code to its table column without a lookup
// structure that could allocate: a switch compiles to a jump table.
func indexOfStatus(code int) statusIndex {
	switch code {
	case 200:
		return 0
	case 201:
		return 1
	case 204:
		return 2
	case 304:
		return 3
	case 400:
		return 4
	case 404:
		return 5
	case 405:
		return 6
	case 409:
		return 7
	case 412:
		return 8
	case 413:
		return 9
	case 429:
		return 10
	case 500:
		return 11
	case 503:
		return 12
	case 504:
		return 13
	case 507:
		return 14
	}
	if code < 100 || code > 599 {
		return statusInvalid
	}
	return statusOther1xx + statusIndex(code/100-1)
}

// statusClass is the latency histogram's status dimension: the class of
// the code, so the histogram table stays endpoints x 4.
type statusClass uint8

const (
	class2xx statusClass = iota // includes 1xx
	class3xx
	class4xx
	class5xx // includes invalid codes
	numClasses
)

var classNames = [numClasses]string{"2xx", "3xx", "4xx", "5xx"}

func classOfStatus(code int) statusClass {
	switch {
	case code < 300 && code >= 100:
		return class2xx
	case code >= 300 && code < 400:
		return class3xx
	case code >= 400 && code < 500:
		return class4xx
	}
	return class5xx
}
