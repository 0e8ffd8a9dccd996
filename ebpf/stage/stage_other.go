//go:build !amd64

package stage

import "reflect"

// On other architectures the markers are ordinary Go leaves: noinline so
// that they stay symbols a uprobe can find, with the id in the first
// argument register of Go's register ABI.

//go:noinline
func received(id uint64) {}

//go:noinline
func proposed(id uint64) {}

//go:noinline
func persisted(id uint64) {}

//go:noinline
func committed(id uint64) {}

//go:noinline
func applied(id uint64) {}

//go:noinline
func answered(id uint64) {}

// ArgOnStack reports whether a probe at a marker's first instruction finds
// the batch id on the stack (false here: it is in the first argument
// register).
const ArgOnStack = false

// Symbol returns the ELF symbol of stage s's marker.
func Symbol(s Stage) string {
	return PackagePath + "." + markerNames[s]
}

// EntryPCs returns the run-time address of each marker in this process.
func EntryPCs() [NumStages]uintptr {
	return [NumStages]uintptr{
		reflect.ValueOf(received).Pointer(),
		reflect.ValueOf(proposed).Pointer(),
		reflect.ValueOf(persisted).Pointer(),
		reflect.ValueOf(committed).Pointer(),
		reflect.ValueOf(applied).Pointer(),
		reflect.ValueOf(answered).Pointer(),
	}
}
