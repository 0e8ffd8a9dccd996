package httpapi

import (
	"bufio"
	"context"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// SnapshotPath is the backup endpoint (SPEC §2):
//
//	GET|HEAD /v1/snapshot[?consistency=linearizable|lease|stale]
//	    → 200 application/octet-stream, streamed (chunked): a consistent
//	      backup of the store; X-Edgekv-Revision is the revision it holds,
//	      X-Edgekv-Snapshot-Index its applied index, Content-Disposition
//	      names a file. The format is the BackupSource's (the node's:
//	      a zstd-compressed, checksummed snapshot file).
//	    → 503 when the read cannot be served (no leader, too many backups
//	      at once), with Retry-After.
//
// A failure after the status was sent (the connection breaks, the source
// fails mid-stream) closes the connection before the last chunk, so the
// client sees a failed download; the format's trailer makes such a file
// fail verification, so a truncated download is never restored.
const SnapshotPath = "/v1/snapshot"

// HeaderSnapshotIndex carries the applied index a backup holds.
const HeaderSnapshotIndex = "X-Edgekv-Snapshot-Index"

// BackupSource is what serves GET /v1/snapshot (the node runtime).
type BackupSource interface {
	// Backup picks the state to back up now, read with consistency c, and
	// returns how to stream it. Errors are *Error as for Backend.
	Backup(ctx context.Context, c Consistency) (BackupStream, error)
}

// BackupStream is one backup, ready to be written.
type BackupStream struct {
	Meta Meta
	// Index is the applied index of the backed-up state.
	Index uint64
	// FileName is suggested to the client (Content-Disposition).
	FileName string
	// WriteTo writes the backup. It runs after the handler returned, on
	// fasthttp's stream goroutine, and must not use the request context.
	WriteTo func(w io.Writer) error
	// Release, when not nil, is called once the stream ended (or was never
	// started: a HEAD request, a failed write of the headers).
	Release func()
}

// deadlineStepBytes: the connection's write deadline moves forward after
// every this many bytes, so a large backup is bounded per step by
// Config.WriteTimeout instead of as a whole.
const deadlineStepBytes = 1 << 20

// HandleSnapshot routes GET /v1/snapshot to src. Call it before serving.
func (a *API) HandleSnapshot(src BackupSource) {
	a.Handle(SnapshotPath, func(ctx *fasthttp.RequestCtx) { a.serveSnapshot(ctx, src) })
}

func (a *API) serveSnapshot(ctx *fasthttp.RequestCtx, src BackupSource) {
	s := a.scratch.Get().(*scratch)
	defer a.releaseScratch(s)
	method := string(ctx.Method())
	if method != fasthttp.MethodGet && method != fasthttp.MethodHead {
		a.methodNotAllowed(ctx, s, "GET, HEAD", false)
		return
	}
	_, query, terr := requestTarget(ctx)
	if terr != nil {
		a.fail(ctx, s, terr, false)
		return
	}
	var q queryArgs
	if e := parseQuery(&q, query, paramConsistency, nil, nil); e != nil {
		a.fail(ctx, s, e, false)
		return
	}
	stream, err := src.Backup(ctx, q.consistency)
	if err != nil {
		e, typed := asError(err)
		if !typed {
			a.log.Error("httpapi: backup source returned an untyped error", "err", err)
		}
		writeErrorBody(ctx, s, a.withRetry(e))
		return
	}
	a.writeMeta(ctx, s, stream.Meta)
	ctx.Response.Header.SetContentType(contentBinary)
	ctx.Response.Header.Set(HeaderSnapshotIndex, strconv.FormatUint(stream.Index, 10))
	if stream.FileName != "" {
		ctx.Response.Header.Set("Content-Disposition", `attachment; filename="`+stream.FileName+`"`)
	}
	if method == fasthttp.MethodHead {
		if stream.Release != nil {
			stream.Release()
		}
		return
	}
	conn, timeout, log := ctx.Conn(), a.cfg.WriteTimeout, a.log
	// Only a real TCP connection's deadline may be moved from the stream
	// goroutine (net.Conn's methods are safe for concurrent use; the
	// in-memory pipes of tests are not).
	tcp, _ := conn.(*net.TCPConn)
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		if stream.Release != nil {
			defer stream.Release()
		}
		dw := &deadlineWriter{w: w, timeout: timeout}
		if tcp != nil {
			dw.conn = tcp
		}
		dw.extend()
		err := stream.WriteTo(dw)
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			// The status is sent: breaking the connection before the last
			// chunk is all that is left, so that the client sees a failed
			// download (fasthttp would end the chunked body cleanly); a
			// file kept anyway lacks the format's trailer and is refused.
			log.Warn("httpapi: backup stream ended early", "index", stream.Index, "bytes", dw.n, "err", err)
			if conn != nil {
				conn.Close()
			}
		}
	})
}

// deadlineWriter moves the connection's write deadline forward as bytes go.
type deadlineWriter struct {
	w       io.Writer
	conn    net.Conn
	timeout time.Duration
	n, mark int64
}

func (d *deadlineWriter) extend() {
	if d.conn != nil && d.timeout > 0 {
		d.conn.SetWriteDeadline(time.Now().Add(d.timeout))
	}
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	n, err := d.w.Write(p)
	d.n += int64(n)
	if d.n-d.mark >= deadlineStepBytes {
		d.mark = d.n
		d.extend()
	}
	return n, err
}
