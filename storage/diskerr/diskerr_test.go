package diskerr

import (
	"errors"
	"os"
	"syscall"
	"testing"
)

func TestClassify(t *testing.T) {
	full := &os.PathError{Op: "write", Path: "f", Err: syscall.ENOSPC}
	if err := Classify(full); !errors.Is(err, ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("ENOSPC: %v", err)
	}
	eio := &os.PathError{Op: "write", Path: "f", Err: syscall.EIO}
	if err := Classify(eio); !errors.Is(err, ErrIO) || errors.Is(err, ErrNoSpace) {
		t.Fatalf("EIO: %v", err)
	}
	app := errors.New("state machine failed")
	if err := Classify(app); err != app {
		t.Fatalf("non-I/O error changed: %v", err)
	}
	if err := Classify(Classify(full)); !errors.Is(err, ErrNoSpace) || errors.Is(err, ErrIO) {
		t.Fatalf("double classification: %v", err)
	}
	c := Corrupt("seg", 42, "bad %s", "record")
	var ce *CorruptError
	if !errors.Is(c, ErrCorrupt) || !errors.As(c, &ce) || ce.Offset != 42 || ce.File != "seg" {
		t.Fatalf("corrupt: %v", c)
	}
}
