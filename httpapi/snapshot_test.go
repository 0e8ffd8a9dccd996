package httpapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
)

// fakeBackups serves a fixed backup, or err.
type fakeBackups struct {
	data     []byte
	err      error
	writeErr error
	asked    Consistency
	released atomic.Int32
}

func (f *fakeBackups) Backup(_ context.Context, c Consistency) (BackupStream, error) {
	f.asked = c
	if f.err != nil {
		return BackupStream{}, f.err
	}
	return BackupStream{
		Meta: Meta{Revision: 42}, Index: 77, FileName: "edgekv-n1-77.snap",
		WriteTo: func(w io.Writer) error {
			// In pieces, as a compressor writes.
			for b := f.data; len(b) > 0; {
				n := min(len(b), 1000)
				if _, err := w.Write(b[:n]); err != nil {
					return err
				}
				b = b[n:]
			}
			return f.writeErr
		},
		Release: func() { f.released.Add(1) },
	}, nil
}

func TestSnapshotRouteStreamsTheBackup(t *testing.T) {
	h := newHarness(t, Config{})
	src := &fakeBackups{data: bytes.Repeat([]byte("0123456789abcdef"), 200000)} // 3.2 MB: several deadline steps
	h.api.HandleSnapshot(src)
	resp := h.do("GET", SnapshotPath+"?consistency=stale", nil, "")
	if resp.StatusCode() != 200 || !bytes.Equal(resp.Body(), src.data) {
		t.Fatalf("GET: status %d, %d bytes, want 200 and %d bytes", resp.StatusCode(), len(resp.Body()), len(src.data))
	}
	if src.asked != Stale {
		t.Errorf("consistency %v, want stale", src.asked)
	}
	for name, want := range map[string]string{
		"Content-Type": contentBinary, HeaderRevision: "42", HeaderSnapshotIndex: "77",
		"Content-Disposition": `attachment; filename="edgekv-n1-77.snap"`,
	} {
		if got := header(resp, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if resp := h.do("GET", SnapshotPath, nil, ""); resp.StatusCode() != 200 || src.asked != Linearizable {
		t.Errorf("default consistency: %d, %v", resp.StatusCode(), src.asked)
	}
	if resp := h.do("HEAD", SnapshotPath, nil, ""); resp.StatusCode() != 200 || header(resp, HeaderSnapshotIndex) != "77" {
		t.Errorf("HEAD: %d", resp.StatusCode())
	}
	if got := src.released.Load(); got != 3 {
		t.Errorf("released %d streams of 3", got)
	}
}

func TestSnapshotRouteErrors(t *testing.T) {
	h := newHarness(t, Config{})
	src := &fakeBackups{data: []byte("x")}
	h.api.HandleSnapshot(src)
	wantError(t, h.do("POST", SnapshotPath, nil, ""), 405, "method_not_allowed")
	wantError(t, h.do("GET", SnapshotPath+"?consistency=sometimes", nil, ""), 400, "bad_request")
	wantError(t, h.do("GET", SnapshotPath+"?limit=3", nil, ""), 400, "bad_request")
	src.err = Errorf(KindUnavailable, "no leader")
	resp := h.do("GET", SnapshotPath, nil, "")
	wantError(t, resp, 503, "unavailable")
	if header(resp, "Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	src.err = errors.New("a bug")
	wantError(t, h.do("GET", SnapshotPath, nil, ""), 500, "internal")
	if !strings.Contains(h.logs.String(), "untyped error") {
		t.Error("an untyped backup error was not logged")
	}
}

// TestSnapshotRouteCutsAFailedStreamShort: once the status is sent, a
// failing source can only end the body early (the backup format's trailer
// then fails verification); it is logged.
func TestSnapshotRouteCutsAFailedStreamShort(t *testing.T) {
	h := newHarness(t, Config{})
	src := &fakeBackups{data: []byte("partial"), writeErr: errors.New("disk gone")}
	h.api.HandleSnapshot(src)
	c := h.dial()
	defer c.Close()
	if _, err := io.WriteString(c, buildRequest("GET", SnapshotPath, nil, "")); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(c) // the server closes the broken chunked stream
	// The client sees a broken download: the connection closes before
	// the chunked body's last chunk (possibly before the headers left).
	if bytes.HasSuffix(got, []byte("0\r\n\r\n")) {
		t.Fatalf("a failed stream must end without the final chunk: %q", got)
	}
	waitLog := func() bool { return strings.Contains(h.logs.String(), "backup stream ended early") }
	for i := 0; i < 200 && !waitLog(); i++ {
		c.Read(make([]byte, 1))
	}
	if !waitLog() {
		t.Fatalf("not logged: %s", h.logs.String())
	}
}
