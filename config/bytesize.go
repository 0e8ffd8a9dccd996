package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// byteSize is a flag.Value for sizes such as 1MiB, 2GiB, 512KiB, 4MB or a
// plain number of bytes. IEC units (KiB, MiB, GiB, TiB) are powers of 1024,
// SI units (KB, MB, GB, TB) powers of 1000, as users of etcd and Consul
// expect.
type byteSize int64

var byteUnits = []struct {
	suffix string
	scale  int64
}{
	// Longest suffixes first so "MiB" is not read as "B".
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

func (b *byteSize) String() string {
	v := int64(*b)
	for _, u := range []struct {
		suffix string
		scale  int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if v != 0 && v%u.scale == 0 {
			return strconv.FormatInt(v/u.scale, 10) + u.suffix
		}
	}
	return strconv.FormatInt(v, 10)
}

func (b *byteSize) Set(s string) error {
	text := strings.TrimSpace(s)
	scale := int64(1)
	for _, u := range byteUnits {
		if len(text) > len(u.suffix) && strings.EqualFold(text[len(text)-len(u.suffix):], u.suffix) {
			text, scale = strings.TrimSpace(text[:len(text)-len(u.suffix)]), u.scale
			break
		}
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("%q is not a size (examples: 1048576, 512KiB, 1MiB, 2GiB)", s)
	}
	if n > math.MaxInt64/scale {
		return fmt.Errorf("%q is too large", s)
	}
	*b = byteSize(n * scale)
	return nil
}
