//go:build unix

package ops

import "syscall"

// processCPUSeconds returns user plus system CPU time of the process.
func processCPUSeconds() (float64, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	toSeconds := func(tv syscall.Timeval) float64 { return float64(tv.Sec) + float64(tv.Usec)/1e6 }
	return toSeconds(ru.Utime) + toSeconds(ru.Stime), true
}
