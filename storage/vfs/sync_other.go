//go:build !linux

package vfs

import "os"

func datasync(f *os.File) error { return f.Sync() }

func preallocate(f *os.File, sizeBytes int64) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() >= sizeBytes {
		return nil
	}
	return f.Truncate(sizeBytes)
}
