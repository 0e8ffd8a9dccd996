//go:build linux

package faultproxy

import (
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// dueTimer waits out the last stretch before a delayed chunk is due on a
// timerfd. Go's own timers are late by up to a millisecond whenever the
// process is idle: the runtime then sleeps in epoll_pwait, whose timeout
// is in whole milliseconds (runtime/netpoll_epoll.go rounds a shorter wait
// up to 1 ms and truncates a longer one). A 50 ms RTT through two proxied
// hops measured 0.85 ms of lateness per hop on average, charged to the
// system under test. A timerfd's expiry is a high-resolution kernel timer
// that wakes the netpoller at once, so the wait ends when it should.
type dueTimer struct {
	fd int      // the timerfd, owned by f; kept so that f.Fd() (which makes f blocking) is never called
	f  *os.File // read through Go's netpoller
	// failed: a wait went wrong; the pipe uses Go's timer from then on.
	failed bool
}

func newDueTimer() (*dueTimer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: timerfd_create: %w", err)
	}
	return &dueTimer{fd: fd, f: os.NewFile(uintptr(fd), "faultproxy-due-timer")}, nil
}

// sleep returns once d has passed.
func (t *dueTimer) sleep(d time.Duration) error {
	if d <= 0 {
		return nil // a zero it_value would disarm the timer: the read would never end
	}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	if err := unix.TimerfdSettime(t.fd, 0, &spec, nil); err != nil {
		return fmt.Errorf("faultproxy: timerfd_settime: %w", err)
	}
	var expirations [8]byte
	if _, err := io.ReadFull(t.f, expirations[:]); err != nil {
		return fmt.Errorf("faultproxy: reading the timerfd: %w", err)
	}
	return nil
}

func (t *dueTimer) close() error { return t.f.Close() }
