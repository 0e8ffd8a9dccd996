//go:build !linux

package faultproxy

import "time"

// dueTimer is Go's timer where there is no timerfd (see due_linux.go).
type dueTimer struct{ failed bool }

func newDueTimer() (*dueTimer, error) { return &dueTimer{}, nil }

func (t *dueTimer) sleep(d time.Duration) error {
	time.Sleep(d)
	return nil
}

func (t *dueTimer) close() error { return nil }
