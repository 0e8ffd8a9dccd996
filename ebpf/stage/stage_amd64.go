package stage

// Implemented in stage_amd64.s.

func received(id uint64)
func proposed(id uint64)
func persisted(id uint64)
func committed(id uint64)
func applied(id uint64)
func answered(id uint64)

// entryPCs stores the ABI0 entry address of each marker into dst.
func entryPCs(dst *[NumStages]uintptr)

// ArgOnStack reports whether a probe at a marker's first instruction finds
// the batch id on the stack at SP+8 (ABI0, amd64 assembly) rather than in
// the first integer argument register.
const ArgOnStack = true

// Symbol returns the ELF symbol of stage s's marker, the one a uprobe
// attaches to.
func Symbol(s Stage) string {
	return PackagePath + "." + markerNames[s] + ".abi0"
}

// EntryPCs returns the run-time address of each marker's first
// instruction in this process, for attaching by address when the binary
// has no symbol table.
func EntryPCs() [NumStages]uintptr {
	var pcs [NumStages]uintptr
	entryPCs(&pcs)
	return pcs
}
