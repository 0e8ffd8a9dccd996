package httpapi

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
)

// fingerprinter computes request fingerprints. It is part of a scratch
// space, so one is used by one request at a time and reused after.
//
// The hashed encoding is unambiguous: a domain tag, a one-byte operation
// tag, then every field with a fixed width or a 64-bit length prefix:
//
//	"edgekv/fingerprint/v1" op
//	  put:           len key, key, len value, value, ifMatch u64, ifAbsent u8
//	  delete:        len key, key, ifMatch u64
//	  delete-prefix: len prefix, prefix
//	  batch:         count u64, then per op: kind u8, len key, key,
//	                 len value, value, ifMatch u64, ifAbsent u8
type fingerprinter struct {
	h      hash.Hash
	domain []byte // fingerprintDomain, converted once
	num    [8]byte
	sum    [sha256.Size]byte
}

// fingerprintDomain separates our fingerprints from any other SHA-256
// use; bump its version if the encoding changes.
const fingerprintDomain = "edgekv/fingerprint/v1"

const (
	fpPut          = 'P'
	fpDelete       = 'D'
	fpDeletePrefix = 'X'
	fpBatch        = 'B'
)

func (f *fingerprinter) begin(op byte) {
	if f.h == nil {
		f.h = sha256.New()
		f.domain = []byte(fingerprintDomain)
	}
	f.h.Reset()
	f.h.Write(f.domain)
	f.num[0] = op
	f.h.Write(f.num[:1])
}

func (f *fingerprinter) u64(v uint64) {
	binary.BigEndian.PutUint64(f.num[:], v)
	f.h.Write(f.num[:])
}

func (f *fingerprinter) flag(v bool) {
	f.num[0] = 0
	if v {
		f.num[0] = 1
	}
	f.h.Write(f.num[:1])
}

func (f *fingerprinter) bytes(b []byte) {
	f.u64(uint64(len(b)))
	f.h.Write(b)
}

func (f *fingerprinter) finish() Fingerprint {
	var fp Fingerprint
	copy(fp[:], f.h.Sum(f.sum[:0]))
	return fp
}

func (f *fingerprinter) put(r *PutRequest) Fingerprint {
	f.begin(fpPut)
	f.bytes(r.Key)
	f.bytes(r.Value)
	f.u64(r.IfMatch)
	f.flag(r.IfAbsent)
	return f.finish()
}

func (f *fingerprinter) delete(r *DeleteRequest) Fingerprint {
	f.begin(fpDelete)
	f.bytes(r.Key)
	f.u64(r.IfMatch)
	return f.finish()
}

func (f *fingerprinter) deletePrefix(r *DeletePrefixRequest) Fingerprint {
	f.begin(fpDeletePrefix)
	f.bytes(r.Prefix)
	return f.finish()
}

func (f *fingerprinter) batch(r *BatchRequest) Fingerprint {
	f.begin(fpBatch)
	f.u64(uint64(len(r.Ops)))
	for i := range r.Ops {
		op := &r.Ops[i]
		f.num[0] = byte(op.Kind)
		f.h.Write(f.num[:1])
		f.bytes(op.Key)
		f.bytes(op.Value)
		f.u64(op.IfMatch)
		f.flag(op.IfAbsent)
	}
	return f.finish()
}
