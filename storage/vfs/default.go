//go:build !crashtest

package vfs

// CrashTestBuild reports whether this binary was built with the crashtest
// tag, under which Default holds unsynced writes in memory.
const CrashTestBuild = false

// Default is the file system storage uses when none is given: the real one.
func Default() FS { return OS{} }
