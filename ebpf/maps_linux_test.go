//go:build linux && amd64

package ebpf

import (
	"strings"
	"testing"
)

func TestFileOffset(t *testing.T) {
	maps := []byte(strings.Join([]string{
		"003ff000-00400000 r-xp 00000000 00:00 0                                  [uprobes-trampoline]",
		"00400000-006a6000 r-xp 00000000 fe:00 9978562                            /usr/bin/edgekv",
		"7f0000000000-7f0000100000 r-xp 00002000 fe:00 1234                       /usr/lib/libx.so",
		"7f0000200000-7f0000300000 rw-p 00000000 00:00 0 ",
		"garbage line",
		"",
	}, "\n"))
	for _, tc := range []struct {
		addr    uint64
		want    uint64
		wantErr string
	}{
		{addr: 0x400000, want: 0},
		{addr: 0x47a740, want: 0x7a740},
		{addr: 0x7f0000000010, want: 0x2010},
		{addr: 0x6a6000, wantErr: "not mapped"},
		{addr: 0x3ff010, wantErr: "not executable file code"},
		{addr: 0x7f0000200010, wantErr: "not executable file code"},
	} {
		got, err := fileOffset(maps, tc.addr)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("fileOffset(%#x) = %#x, %v; want error %q", tc.addr, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("fileOffset(%#x) = %#x, %v; want %#x", tc.addr, got, err, tc.want)
		}
	}
}

// FuzzFileOffset feeds arbitrary maps text: an error or an offset, never a
// panic, and an offset only for an address inside an executable file
// mapping.
func FuzzFileOffset(f *testing.F) {
	f.Add([]byte("00400000-006a6000 r-xp 00000000 fe:00 9978562 /usr/bin/edgekv\n"), uint64(0x400010))
	f.Add([]byte("00400000-006a6000 r-xp 00000000 fe:00 0\n"), uint64(0x400010))
	f.Add([]byte("ffffffffffffffff-0 r-xp ffffffffffffffff fe:00 1 /x\n"), uint64(1))
	f.Add([]byte(""), uint64(0))
	f.Fuzz(func(t *testing.T, maps []byte, addr uint64) {
		off, err := fileOffset(maps, addr)
		if err == nil && !strings.Contains(string(maps), "x") {
			t.Fatalf("offset %#x from maps without an executable mapping", off)
		}
	})
}
