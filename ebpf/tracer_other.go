//go:build !(linux && amd64)

package ebpf

import (
	"fmt"
	"runtime"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

func checkPlatform() error {
	return fmt.Errorf("%w: not supported on %s/%s (linux/amd64 only)", ErrUnavailable, runtime.GOOS, runtime.GOARCH)
}

// Tracer is never created on this platform.
type Tracer struct{}

// Attach always fails on this platform with an error wrapping
// ErrUnavailable.
func Attach(Options) (*Tracer, error) { return nil, checkPlatform() }

// PID returns 0.
func (t *Tracer) PID() int { return 0 }

// Snapshot fails on this platform.
func (t *Tracer) Snapshot(*Snapshot) error { return checkPlatform() }

// ProgramRuntime fails on this platform.
func (t *Tracer) ProgramRuntime() (uint64, time.Duration, error) { return 0, 0, checkPlatform() }

// Close does nothing.
func (t *Tracer) Close() error { return nil }

// RegisterMetrics does nothing on this platform.
func (t *Tracer) RegisterMetrics(*metrics.Set) {}
