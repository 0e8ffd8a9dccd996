//go:build crashtest

package vfs

// CrashTestBuild reports whether this binary was built with the crashtest
// tag, under which Default holds unsynced writes in memory.
const CrashTestBuild = true

// Default returns a CrashFS over the real file system: every write stays in
// this process's memory until its file is synced, every directory change
// until its directory is synced, so kill -9 loses what a power cut would.
func Default() FS { return NewCrashFS() }
