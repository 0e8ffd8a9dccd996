//go:build !unix

package ops

// processCPUSeconds is not implemented off unix; the family is then absent.
func processCPUSeconds() (float64, bool) { return 0, false }
