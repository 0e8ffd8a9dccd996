package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// maxStatBytes bounds what is read of /proc/<pid>/stat: the line is a few
// hundred bytes; the command name inside it at most 64.
const maxStatBytes = 4096

// procCPU is one process's CPU time so far, as the kernel accounts it in
// /proc/<pid>/stat (all of its threads, live and exited).
type procCPU struct {
	userTicks, systemTicks uint64
}

// parseProcStat reads utime and stime (fields 14 and 15, in clock ticks)
// from the contents of /proc/<pid>/stat. The command name (field 2) is in
// parentheses and may itself hold spaces and parentheses, so the fields
// are counted from the LAST closing parenthesis.
func parseProcStat(b []byte) (procCPU, error) {
	if len(b) > maxStatBytes {
		return procCPU{}, fmt.Errorf("stat line of %d bytes, over the %d-byte bound", len(b), maxStatBytes)
	}
	end := bytes.LastIndexByte(b, ')')
	if end < 0 || bytes.IndexByte(b, '(') < 0 || bytes.IndexByte(b, '(') > end {
		return procCPU{}, errors.New("stat line has no (command name)")
	}
	// After ")": field 3 (state) onwards, space separated.
	fields := bytes.Fields(b[end+1:])
	const firstField = 3
	const utimeField, stimeField = 14, 15
	if len(fields) < stimeField-firstField+1 {
		return procCPU{}, fmt.Errorf("stat line has %d fields after the command name, want at least %d", len(fields), stimeField-firstField+1)
	}
	user, err := strconv.ParseUint(string(fields[utimeField-firstField]), 10, 64)
	if err != nil {
		return procCPU{}, fmt.Errorf("stat field utime: %w", err)
	}
	sys, err := strconv.ParseUint(string(fields[stimeField-firstField]), 10, 64)
	if err != nil {
		return procCPU{}, fmt.Errorf("stat field stime: %w", err)
	}
	return procCPU{userTicks: user, systemTicks: sys}, nil
}

// readProcCPU reads /proc/<pid>/stat.
func readProcCPU(pid int) (procCPU, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procCPU{}, fmt.Errorf("reading CPU time of pid %d: %w", pid, err)
	}
	c, err := parseProcStat(b)
	if err != nil {
		return procCPU{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return c, nil
}

// cpuSampler turns clock ticks into time. The tick rate comes from the
// auxiliary vector (AT_CLKTCK), which is what sysconf(_SC_CLK_TCK) reads.
type cpuSampler struct {
	ticksPerSec uint64
}

func newCPUSampler() cpuSampler {
	hz, err := clockTicksFromAuxv("/proc/self/auxv")
	if err != nil || hz == 0 {
		hz = 100 // USER_HZ on every Linux architecture we build for
	}
	return cpuSampler{ticksPerSec: hz}
}

// atClkTck is the auxiliary vector entry type of the clock tick rate.
const atClkTck = 17

// maxAuxvBytes bounds the auxiliary vector read (it is a few hundred bytes).
const maxAuxvBytes = 64 << 10

func clockTicksFromAuxv(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading auxv: %w", err)
	}
	return parseAuxvClockTicks(b)
}

// parseAuxvClockTicks finds AT_CLKTCK in a 64-bit little-endian auxiliary
// vector: pairs of (type, value), ended by type 0.
func parseAuxvClockTicks(b []byte) (uint64, error) {
	if len(b) > maxAuxvBytes {
		return 0, fmt.Errorf("auxv of %d bytes, over the %d-byte bound", len(b), maxAuxvBytes)
	}
	for off := 0; off+16 <= len(b); off += 16 {
		typ := binary.LittleEndian.Uint64(b[off:])
		val := binary.LittleEndian.Uint64(b[off+8:])
		if typ == 0 {
			break
		}
		if typ == atClkTck {
			return val, nil
		}
	}
	return 0, errors.New("auxv has no AT_CLKTCK")
}

func (s cpuSampler) duration(ticks uint64) time.Duration {
	return time.Duration(ticks * uint64(time.Second) / s.ticksPerSec)
}

// sample sums the CPU time of every pid so far.
func (s cpuSampler) sample(pids []int) (time.Duration, error) {
	var ticks uint64
	for _, pid := range pids {
		c, err := readProcCPU(pid)
		if err != nil {
			return 0, err
		}
		ticks += c.userTicks + c.systemTicks
	}
	return s.duration(ticks), nil
}
