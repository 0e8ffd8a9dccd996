package wal

import (
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/edgekv/edgekv/consensus/raftmsg"
)

// TestEntryRecordCarriesEveryField fills every field of raftmsg.Entry by
// reflection with a non-zero value and checks the record round-trips it, so
// a field added to raftmsg.Entry without a WAL encoding fails here instead
// of being silently dropped at the next restart.
func TestEntryRecordCarriesEveryField(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 100; round++ {
		var e raftmsg.Entry
		v := reflect.ValueOf(&e).Elem()
		for i := 0; i < v.NumField(); i++ {
			f := v.Field(i)
			switch name := v.Type().Field(i).Name; {
			case name == "Type":
				f.SetUint(uint64(rng.IntN(int(raftmsg.EntryConfChange) + 1)))
			case name == "Index":
				f.SetUint(rng.Uint64() | 1)
			case f.Kind() == reflect.Uint64:
				f.SetUint(rng.Uint64() | 1) // never zero: a dropped field must show
			case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Uint8:
				b := make([]byte, 1+rng.IntN(64))
				for j := range b {
					b[j] = byte(rng.Uint32())
				}
				f.SetBytes(b)
			default:
				t.Fatalf("raftmsg.Entry.%s has kind %s this test cannot fill: extend the WAL record and this test", name, f.Kind())
			}
		}
		rec := appendEntry(nil, &e)
		got, err := decodeEntry(rec[headerBytes:])
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Fatalf("entry record round trip:\n got %+v\nwant %+v", got, e)
		}
	}
}
