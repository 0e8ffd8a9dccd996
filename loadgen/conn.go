package loadgen

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// bufferBytes sizes each connection's read and write buffers (fasthttp's
// client default): a response's headers must fit, and a request of a
// small value goes out in one write; larger bodies stream through. With
// thousands of connections, this is most of the generator's memory.
const bufferBytes = 4 << 10

// responseBodyBytes bounds what one response may make a worker buffer,
// so that thousands of workers cannot be made to hold large bodies: a GET
// can return a value written by someone else, up to the node's
// --max-value-bytes (1 MiB by default, or larger than our own values),
// and other bodies are small JSON. A larger body is a bad_response.
func responseBodyBytes(valueBytes int) int {
	const (
		specDefaultMaxValueBytes = 1 << 20
		jsonSlackBytes           = 64 << 10
	)
	return max(valueBytes, specDefaultMaxValueBytes) + jsonSlackBytes
}

// conn is one worker's HTTP/1.1 connection to one endpoint. The worker
// owns it: one request at a time, written with fasthttp's Request.Write
// and read with Response.ReadLimitBody on our own buffers. Owning the
// socket (instead of going through a fasthttp.HostClient pool) means no
// pool lock, no hidden retries that would hide errors and distort
// latency, and no background goroutine per client; see BenchmarkClientCost
// for the CPU cost of each choice.
//
// A failed exchange closes the socket; the next request dials again.
type conn struct {
	addr         string
	maxBodyBytes int // of one response

	// mu guards nc against interrupt, which another goroutine calls to
	// unblock a worker when the run is cancelled. The worker is the only
	// goroutine that changes nc (under mu), so it reads nc without mu.
	mu sync.Mutex
	nc net.Conn
	// cancelled is set by interrupt: a connection dialed afterwards is
	// closed at once instead of blocking until its deadline.
	cancelled bool

	br *bufio.Reader
	bw *bufio.Writer
}

func newConn(addr string, maxBodyBytes int) *conn {
	return &conn{addr: addr, maxBodyBytes: maxBodyBytes}
}

// roundTrip sends req and reads its response into resp, all before
// deadline. It returns a classified error when no complete response
// arrived.
func (c *conn) roundTrip(req *fasthttp.Request, resp *fasthttp.Response, deadline time.Time) (errClass, error) {
	if c.nc == nil {
		if class, err := c.dial(deadline); err != nil {
			return class, err
		}
	}
	if err := c.arm(deadline); err != nil {
		c.close()
		if errors.Is(err, errCancelled) {
			return errOther, err
		}
		return classifyError(err), err
	}
	if err := req.Write(c.bw); err != nil {
		c.close()
		return classifyError(err), err
	}
	if err := c.bw.Flush(); err != nil {
		c.close()
		return classifyError(err), err
	}
	if err := resp.ReadLimitBody(c.br, c.maxBodyBytes); err != nil {
		c.close()
		return classifyError(err), err
	}
	if resp.ConnectionClose() {
		c.close()
	}
	return errNone, nil
}

// dial connects, giving up at deadline.
func (c *conn) dial(deadline time.Time) (errClass, error) {
	d := net.Dialer{Deadline: deadline}
	nc, err := d.Dial("tcp", c.addr)
	if err != nil {
		if class := classifyError(err); class != errOther {
			return class, err
		}
		return errDial, err
	}
	if c.br == nil {
		c.br = bufio.NewReaderSize(nc, bufferBytes)
		c.bw = bufio.NewWriterSize(nc, bufferBytes)
	} else {
		c.br.Reset(nc)
		c.bw.Reset(nc)
	}
	c.mu.Lock()
	cancelled := c.cancelled
	if !cancelled {
		c.nc = nc
	}
	c.mu.Unlock()
	if cancelled {
		_ = nc.Close() // never used
		return errOther, errCancelled
	}
	return errNone, nil
}

func (c *conn) close() {
	c.mu.Lock()
	nc := c.nc
	c.nc = nil
	c.mu.Unlock()
	if nc != nil {
		_ = nc.Close() // the connection is being dropped; nothing to report
	}
}

// arm sets the exchange's deadline, unless the run was cancelled. It
// holds mu so that it cannot land after interrupt's past deadline and
// undo it: that would leave the worker blocked until deadline (an hour,
// with --timeout 1h) after the run was cancelled.
func (c *conn) arm(deadline time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancelled {
		return errCancelled
	}
	return c.nc.SetDeadline(deadline)
}

// errCancelled: the run was cancelled before the exchange began.
var errCancelled = errors.New("run cancelled")

// interrupt makes a blocked roundTrip return at once, and every later one
// fail: the run is over. Safe to call from any goroutine.
func (c *conn) interrupt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cancelled = true
	if c.nc != nil {
		_ = c.nc.SetDeadline(time.Unix(1, 0)) // a past deadline fails pending I/O
	}
}

// errClass is the kind of transport failure, for the result's error
// counts. A fixed set keeps counting allocation-free.
type errClass uint8

const (
	errNone errClass = iota
	errTimeout
	errRefused
	errReset
	errClosed // the server closed the connection before a full response
	errDial   // any other failure to connect
	errBadResponse
	errOther
	numErrClasses
)

var errClassNames = [numErrClasses]string{
	errNone:        "none",
	errTimeout:     "timeout",
	errRefused:     "connection_refused",
	errReset:       "connection_reset",
	errClosed:      "connection_closed",
	errDial:        "dial",
	errBadResponse: "bad_response",
	errOther:       "other",
}

func (e errClass) String() string { return errClassNames[e] }

func classifyError(err error) errClass {
	switch {
	case err == nil:
		return errNone
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, fasthttp.ErrTimeout):
		return errTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return errRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return errReset
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return errClosed
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errTimeout
	}
	var smallBuf *fasthttp.ErrSmallBuffer
	if errors.As(err, &smallBuf) || errors.Is(err, fasthttp.ErrBodyTooLarge) {
		return errBadResponse
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return errOther
	}
	// fasthttp reports a malformed status line or header as a plain error.
	return errBadResponse
}
