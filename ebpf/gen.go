package ebpf

// Regenerate the BPF objects and their Go bindings (needs clang, llvm-strip
// and libbpf's headers; the outputs are committed so that `go build` needs
// none of them and the binary stays static):
//
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target amd64 -tags linux -type hist -type batch -type sys_start trace bpf/trace.bpf.c -- -O2 -g -Wall -Werror -D__TARGET_ARCH_x86 -Ibpf
