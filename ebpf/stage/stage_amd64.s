#include "textflag.h"

// Every marker is the same two instructions: a 5-byte NOP, then RET.
// The NOP (0F 1F 44 00 00, "nopl 0x0(%rax,%rax,1)") is the pattern the
// kernel's x86 uprobe code can replace with a call into its uprobe
// trampoline: ~0.5 µs per hit instead of an int3 trap (5-8 µs).
// NOFRAME and NOSPLIT: no prologue and no stack-growth check, so an entry
// probe fires exactly once per call and the trampoline's few pushes stay
// within the stack a NOSPLIT leaf is guaranteed. ABI0: at the first
// instruction 0(SP) is the return address and 8(SP) the batch id.

#define NOP5 BYTE $0x0f; BYTE $0x1f; BYTE $0x44; BYTE $0x00; BYTE $0x00

// func received(id uint64)
TEXT ·received(SB), NOSPLIT|NOFRAME, $0-8
	NOP5
	RET

// func proposed(id uint64)
TEXT ·proposed(SB), NOSPLIT|NOFRAME, $0-8
	NOP5
	RET

// func persisted(id uint64)
TEXT ·persisted(SB), NOSPLIT|NOFRAME, $0-8
	NOP5
	RET

// func committed(id uint64)
TEXT ·committed(SB), NOSPLIT|NOFRAME, $0-8
	NOP5
	RET

// func applied(id uint64)
TEXT ·applied(SB), NOSPLIT|NOFRAME, $0-8
	NOP5
	RET

// func answered(id uint64)
TEXT ·answered(SB), NOSPLIT|NOFRAME, $0-8
	NOP5
	RET

// func entryPCs(dst *[NumStages]uintptr)
TEXT ·entryPCs(SB), NOSPLIT, $0-8
	MOVQ dst+0(FP), DI
	LEAQ ·received(SB), AX
	MOVQ AX, 0(DI)
	LEAQ ·proposed(SB), AX
	MOVQ AX, 8(DI)
	LEAQ ·persisted(SB), AX
	MOVQ AX, 16(DI)
	LEAQ ·committed(SB), AX
	MOVQ AX, 24(DI)
	LEAQ ·applied(SB), AX
	MOVQ AX, 32(DI)
	LEAQ ·answered(SB), AX
	MOVQ AX, 40(DI)
	RET
