package ebpf

// Regenerate the BPF objects and their Go bindings (needs clang, llvm-strip
// and libbpf's headers; the outputs are committed so that `go build` needs
// none of them and the binary stays static). The second step records the
// sources' hashes, which TestGeneratedObjectsAreCurrent checks, so that an
// edit of the C without regenerating fails CI (which has no clang).
//
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target amd64 -tags linux -type hist -type batch -type sys_start trace bpf/trace.bpf.c -- -O2 -g -Wall -Werror -D__TARGET_ARCH_x86 -Ibpf
//go:generate sh -c "sha256sum bpf/trace.bpf.c bpf/edgekv_types.h > bpf/generated-from.sha256"
