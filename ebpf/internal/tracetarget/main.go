//go:build linux

// Command tracetarget is a stand-in for an edgekv node in the tracing
// tests: a separate process, built with symbols, that calls the stage
// markers and does real fdatasync calls when told to on stdin, so the
// tests can attach to it by PID the way `edgekv trace --pid` does.
//
// Protocol, one command per line on stdin; after each it prints "ok" (or
// "error: ...") on stdout:
//
//	batches N    call all six markers in order for N new batch ids
//	fsync N DIR  write 4 KiB and fdatasync it, N times, in a file in DIR
//	quit         exit 0
//
// With -pcs it prints "<symbol> <entry pc in hex>" per marker and exits.
package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/edgekv/edgekv/ebpf/stage"
	"golang.org/x/sys/unix"
)

// maxCount bounds N in a command.
const maxCount = 1_000_000

func main() {
	if len(os.Args) == 2 && os.Args[1] == "-pcs" {
		pcs := stage.EntryPCs()
		for i, pc := range pcs {
			fmt.Printf("%s %x\n", stage.Symbol(stage.Stage(i)), pc)
		}
		return
	}
	fmt.Printf("ready %d\n", os.Getpid())
	in := bufio.NewScanner(os.Stdin)
	var nextID uint64 = 1
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		if f[0] == "quit" {
			return
		}
		if len(f) < 2 {
			fmt.Println("error: missing count")
			continue
		}
		n, err := strconv.Atoi(f[1])
		if err != nil || n < 0 || n > maxCount {
			fmt.Printf("error: bad count %q\n", f[1])
			continue
		}
		switch {
		case f[0] == "batches":
			for i := 0; i < n; i++ {
				for s := 0; s < stage.NumStages; s++ {
					stage.Mark(stage.Stage(s), nextID)
				}
				nextID++
			}
			fmt.Println("ok")
		case f[0] == "fsync" && len(f) == 3:
			if err := fsyncs(n, f[2]); err != nil {
				fmt.Printf("error: %v\n", err)
				continue
			}
			fmt.Println("ok")
		default:
			fmt.Printf("error: unknown command %q\n", in.Text())
		}
	}
}

func fsyncs(n int, dir string) error {
	f, err := os.CreateTemp(dir, "fsync-*")
	if err != nil {
		return err
	}
	defer os.Remove(filepath.Clean(f.Name()))
	defer f.Close()
	block := make([]byte, 4096)
	for i := 0; i < n; i++ {
		if _, err := f.Write(block); err != nil {
			return err
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return fmt.Errorf("fdatasync: %w", err)
		}
	}
	return nil
}
