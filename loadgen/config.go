package loadgen

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"time"
)

// Workload names what the generator sends.
const (
	WorkloadPut   = "put"   // PUT /v1/kv/<key>
	WorkloadGet   = "get"   // GET /v1/kv/<key>?consistency=...
	WorkloadMixed = "mixed" // gets with probability ReadFraction, puts otherwise
	WorkloadBatch = "batch" // POST /v1/batch with BatchSize puts (PutAll)
)

// Key orders.
const (
	KeysRandom     = "random"     // uniform over the key space, from the seed
	KeysSequential = "sequential" // key n for the n-th request of the run, wrapping
)

var (
	workloads    = []string{WorkloadPut, WorkloadGet, WorkloadMixed, WorkloadBatch}
	consistences = []string{"linearizable", "lease", "stale"}
	keyOrders    = []string{KeysRandom, KeysSequential}
)

// Bounds on the configuration, so that a typo cannot make the generator
// exhaust the machine it runs on.
const (
	maxConcurrency = 16384
	maxValueBytes  = 16 << 20
	maxBatchSize   = 100000
	maxBodyBytes   = 256 << 20 // one batch request body
	maxTimeout     = time.Hour
	maxRate        = 10e6 // requests per second
)

// Config describes one benchmark run. The zero value is not valid; start
// from DefaultConfig.
type Config struct {
	// Endpoints are the nodes' client addresses (host:port); worker i
	// connects to Endpoints[i % len(Endpoints)].
	Endpoints []string

	Workload     string
	Consistency  string  // for gets: linearizable, lease or stale
	ReadFraction float64 // mixed: probability that a request is a get
	BatchSize    int     // batch: puts per PutAll request

	// Concurrency is the number of workers, each with its own connection.
	// In open loop it is also the bound on outstanding requests.
	Concurrency int
	// Rate, when positive, selects open loop: requests are scheduled at
	// Rate per second on a fixed timeline, whatever the responses do, and
	// latency counts from each request's scheduled time. Zero selects
	// closed loop: each worker sends its next request when the previous
	// one is answered.
	Rate float64

	// Requests bounds the measured requests (0: no bound); Duration bounds
	// the measured time (0: no bound). At least one must be set; the run
	// stops at whichever comes first.
	Requests uint64
	Duration time.Duration
	// Warmup runs the same workload for this long before measuring, with
	// its results discarded.
	Warmup time.Duration
	// Preload writes every key of the key space once before the warm-up,
	// so that gets find their keys.
	Preload bool

	ValueBytes int
	KeySpace   uint64
	KeyPrefix  string
	KeyOrder   string
	// Seed fixes every key and value choice: each worker draws from its
	// own generator seeded from (Seed, worker index).
	Seed uint64

	// Timeout bounds one request, from dialing to the last byte of the
	// response.
	Timeout time.Duration
}

// DefaultConfig returns the defaults that `edgekv bench` documents.
func DefaultConfig() Config {
	return Config{
		Endpoints:    []string{"127.0.0.1:7379"},
		Workload:     WorkloadPut,
		Consistency:  "linearizable",
		ReadFraction: 0.5,
		BatchSize:    100,
		Concurrency:  16,
		Duration:     10 * time.Second,
		Warmup:       time.Second,
		ValueBytes:   256,
		KeySpace:     100000,
		KeyPrefix:    "bench/",
		KeyOrder:     KeysRandom,
		Seed:         1,
		Timeout:      10 * time.Second,
	}
}

// openLoop reports whether the run schedules requests at a fixed rate.
func (c *Config) openLoop() bool { return c.Rate > 0 }

// Validate checks every field and returns all problems at once, each
// naming the flag that sets it.
func (c *Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(len(c.Endpoints) > 0, "--endpoints: at least one address is needed")
	for _, e := range c.Endpoints {
		if err := checkEndpoint(e); err != nil {
			errs = append(errs, fmt.Errorf("--endpoints: %w", err))
		}
	}
	check(contains(workloads, c.Workload), "--workload %q: want one of %s", c.Workload, strings.Join(workloads, ", "))
	check(contains(consistences, c.Consistency), "--consistency %q: want one of %s", c.Consistency, strings.Join(consistences, ", "))
	check(c.ReadFraction >= 0 && c.ReadFraction <= 1, "--read-fraction %v: want a number in [0, 1]", c.ReadFraction)
	check(c.BatchSize >= 1 && c.BatchSize <= maxBatchSize, "--batch-size %d: want 1 to %d", c.BatchSize, maxBatchSize)
	check(c.Workload != WorkloadBatch || uint64(c.BatchSize) <= c.KeySpace,
		"--batch-size %d is larger than --key-space %d: a PutAll names each key once", c.BatchSize, c.KeySpace)
	check(c.Concurrency >= 1 && c.Concurrency <= maxConcurrency, "--concurrency %d: want 1 to %d", c.Concurrency, maxConcurrency)
	check(!math.IsNaN(c.Rate) && c.Rate >= 0 && c.Rate <= maxRate, "--rate %v: want 0 (closed loop) or up to %g requests per second", c.Rate, float64(maxRate))
	check(c.Duration >= 0, "--duration %v: must not be negative", c.Duration)
	check(c.Requests > 0 || c.Duration > 0, "set --requests or --duration (or both): the run needs an end")
	check(c.Warmup >= 0, "--warmup %v: must not be negative", c.Warmup)
	check(c.ValueBytes >= 0 && c.ValueBytes <= maxValueBytes, "--value-size %d: want 0 to %d bytes", c.ValueBytes, maxValueBytes)
	check(contains(keyOrders, c.KeyOrder), "--key-order %q: want one of %s", c.KeyOrder, strings.Join(keyOrders, ", "))
	check(c.Timeout > 0 && c.Timeout <= maxTimeout, "--timeout %v: want more than 0 and at most %v", c.Timeout, maxTimeout)
	ks, err := newKeySpace(c.KeyPrefix, c.KeySpace)
	if err != nil {
		errs = append(errs, fmt.Errorf("--key-prefix/--key-space: %w", err))
	} else if c.Workload == WorkloadBatch && c.BatchSize >= 1 && c.BatchSize <= maxBatchSize &&
		c.ValueBytes >= 0 && c.ValueBytes <= maxValueBytes {
		n := batchBodyBytes(&ks, c.BatchSize, c.ValueBytes)
		check(n <= maxBodyBytes, "--batch-size %d with --value-size %d makes %d-byte requests, over the %d-byte bound", c.BatchSize, c.ValueBytes, n, maxBodyBytes)
	}
	return errors.Join(errs...)
}

// checkEndpoint accepts host:port with a non-empty host and a numeric port.
func checkEndpoint(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: want host:port: %w", addr, err)
	}
	if host == "" {
		return fmt.Errorf("address %q has no host", addr)
	}
	if p, err := net.LookupPort("tcp", port); err != nil || p == 0 {
		return fmt.Errorf("address %q: bad port", addr)
	}
	return nil
}

// normalizeEndpoint strips an http:// scheme and a trailing slash, so
// that a URL copied from elsewhere works; https is refused, since the
// node serves plain HTTP.
func normalizeEndpoint(s string) (string, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(strings.ToLower(s), "https://") {
		return "", fmt.Errorf("%q: https is not supported (the node serves plain HTTP)", s)
	}
	if strings.HasPrefix(strings.ToLower(s), "http://") {
		s = s[len("http://"):]
	}
	return strings.TrimSuffix(s, "/"), nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
