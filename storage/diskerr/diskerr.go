// Package diskerr holds the typed errors of edgekv's durable storage, so the
// log, the snapshot files and the node runtime name them the same way.
//
// The runtime maps them to behaviour: ErrNoSpace and ErrIO stop writes with
// HTTP 507 until a write succeeds again; ErrFailed means a sync failed and
// the storage must be reopened from disk (the page cache can no longer be
// trusted); ErrCorrupt and ErrMetaMismatch stop the node at start.
//
// This package must never decide policy itself or import anything of ours.
package diskerr

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
)

var (
	// ErrNoSpace: the disk is full. Nothing was acknowledged; the log is
	// intact and accepts writes again once space returns.
	ErrNoSpace = errors.New("storage: no space left on device")
	// ErrIO: a write failed with an I/O error. Nothing was acknowledged.
	ErrIO = errors.New("storage: I/O error")
	// ErrFailed: a sync failed, or a failed write could not be undone.
	// Sticky: every later write fails until the storage is reopened.
	ErrFailed = errors.New("storage: failed, reopen required")
	// ErrCorrupt: data that was synced is damaged or missing. See
	// *CorruptError for the file and offset.
	ErrCorrupt = errors.New("storage: corrupt")
	// ErrMetaMismatch: the data dir belongs to another node or cluster, or
	// was written by a newer format.
	ErrMetaMismatch = errors.New("storage: data dir metadata mismatch")
	// ErrClosed: the storage was closed.
	ErrClosed = errors.New("storage: closed")
)

// CorruptError names where damage was found. errors.Is(err, ErrCorrupt)
// holds for it.
type CorruptError struct {
	File   string
	Offset int64
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("storage: corrupt: %s at offset %d: %s", e.File, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// Corrupt returns a *CorruptError.
func Corrupt(file string, offset int64, format string, args ...any) error {
	return &CorruptError{File: file, Offset: offset, Reason: fmt.Sprintf(format, args...)}
}

// Classify wraps an error from the file system with ErrNoSpace (ENOSPC,
// EDQUOT) or ErrIO (any other errno or path error), keeping the original in
// the chain; other errors (from a caller's callback, say) pass unchanged.
func Classify(err error) error {
	var errno syscall.Errno
	var pathErr *fs.PathError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNoSpace), errors.Is(err, ErrIO), errors.Is(err, ErrFailed):
		return err
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	case errors.As(err, &errno), errors.As(err, &pathErr):
		return fmt.Errorf("%w: %w", ErrIO, err)
	default:
		return err
	}
}
