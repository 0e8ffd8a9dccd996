package wire

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/wire/codec"
	"github.com/edgekv/edgekv/wire/frame"
)

// Compression selects how replication traffic and snapshots are compressed
// (SPEC §1 --compression).
type Compression uint8

const (
	// CompressionAuto: snappy for the append stream, zstd for snapshots.
	CompressionAuto Compression = iota
	CompressionNone
	CompressionSnappy
	CompressionZstd
)

// ParseCompression reads a --compression value.
func ParseCompression(s string) (Compression, error) {
	switch s {
	case "auto", "":
		return CompressionAuto, nil
	case "none":
		return CompressionNone, nil
	case "snappy":
		return CompressionSnappy, nil
	case "zstd":
		return CompressionZstd, nil
	}
	return 0, fmt.Errorf("wire: unknown compression %q (want none, snappy, zstd or auto)", s)
}

func (c Compression) String() string {
	return [...]string{"auto", "none", "snappy", "zstd"}[min(int(c), 3)]
}

// streamCodec is the codec for the append and control lanes.
func (c Compression) streamCodec() frame.Codec {
	switch c {
	case CompressionNone:
		return frame.CodecNone
	case CompressionZstd:
		return frame.CodecZstd
	}
	return frame.CodecSnappy
}

// snapshotCodec is the codec for snapshot streams.
func (c Compression) snapshotCodec() frame.Codec {
	switch c {
	case CompressionNone:
		return frame.CodecNone
	case CompressionSnappy:
		return frame.CodecSnappy
	}
	return frame.CodecZstd
}

// Batch is a decoded batch of Raft messages and forwarded requests from one
// peer; see codec.Batch for the lifetime rule (the handler owns it and
// calls Release exactly once).
type Batch = codec.Batch

// ForwardRequest, ForwardOp, Outcome and Status are the forwarding
// vocabulary (see package codec).
type (
	ForwardRequest = codec.ForwardRequest
	ForwardOp      = codec.ForwardOp
	Outcome        = codec.Outcome
	Status         = codec.Status
)

const (
	ForwardPropose        = codec.ForwardPropose
	ForwardReadIndex      = codec.ForwardReadIndex
	StatusUnknown         = codec.StatusUnknown
	StatusCommitted       = codec.StatusCommitted
	StatusConditionFailed = codec.StatusConditionFailed
	StatusOverloaded      = codec.StatusOverloaded
	StatusQuotaExceeded   = codec.StatusQuotaExceeded
)

// Handler receives what peers send. Its methods are called from transport
// goroutines (one per inbound connection); they must not block for long:
// a slow HandleBatch backs up that one connection (TCP flow control), a
// slow HandleSnapshot only the snapshot lane.
type Handler interface {
	// HandleBatch delivers the Raft messages and forwarded requests of one
	// received batch, in the order they were sent on their lane. The
	// handler owns b: entry data and payloads point into a pooled receive
	// buffer, valid until it calls b.Release() (exactly once). Copy what
	// must outlive it. Answer each forwarded request with
	// Transport.Respond.
	HandleBatch(b *Batch)
	// HandleSnapshot receives one snapshot stream. msg is the MsgSnap;
	// data yields exactly the snapshot's bytes and then io.EOF, or an error
	// if the stream broke (then discard everything read: the sender starts
	// over on a new connection). Return nil only once the snapshot is
	// stored; the sender's SnapshotDone reports the result.
	HandleSnapshot(msg raftmsg.Message, data io.Reader) error
	// PeerUnreachable says a connection to id failed (messages may have
	// been lost): tell Raft (ReportUnreachable). Must not block.
	PeerUnreachable(id raftmsg.NodeID)
	// SnapshotDone reports the end of a SendSnapshot: err nil when the peer
	// stored it (tell Raft: ReportSnapshot). Must not block.
	SnapshotDone(to raftmsg.NodeID, index uint64, err error)
}

// Config configures a Transport. Zero durations and sizes take the
// defaults below.
type Config struct {
	LocalID   raftmsg.NodeID
	LocalName string
	// ClusterID is derived from --initial-cluster-token: nodes of two
	// clusters refuse each other in the handshake.
	ClusterID uint64
	// ListenAddr is the peer address to listen on ("127.0.0.1:0" in tests).
	ListenAddr  string
	Compression Compression
	Handler     Handler
	Logger      *slog.Logger

	// MaxFrameBytes bounds one frame's payload; records larger than that
	// are split into several frames. MaxRecordBytes bounds a whole record
	// (one batch, or one snapshot chunk): a single entry of up to about
	// MaxRecordBytes is still carried.
	MaxFrameBytes  int
	MaxRecordBytes int
	// MaxBatchBytes is the size at which the sender stops adding messages
	// to a batch (a single larger message travels alone).
	MaxBatchBytes int
	// MinCompressBytes: smaller payloads are never compressed.
	MinCompressBytes int
	// ControlQueueLen, AppendQueueLen bound each peer's send queues in
	// messages; MaxQueueBytes bounds the append queue's entry bytes.
	ControlQueueLen int
	AppendQueueLen  int
	MaxQueueBytes   int
	// ReceiveRetainBytes bounds the idle receive buffers kept for reuse
	// (in total, over all size classes).
	ReceiveRetainBytes int

	DialTimeout      time.Duration
	HandshakeTimeout time.Duration
	// IdleTimeout closes an inbound connection that sends nothing (not
	// even a ping) for that long; senders ping every IdleTimeout/4.
	IdleTimeout  time.Duration
	WriteTimeout time.Duration
	BackoffBase  time.Duration
	BackoffMax   time.Duration

	SnapshotChunkBytes   int
	SnapshotWindowChunks int
	SnapshotAttempts     int

	// Seed seeds the reconnect jitter (0: a fixed default).
	Seed uint64

	// versionMin, versionMax override the protocol versions (tests of
	// negotiation only).
	versionMin, versionMax uint16
}

// Defaults. DefaultMaxFrameBytes holds the largest API request
// (--max-request-bytes, 4 MiB) plus its encoding overhead in one frame.
const (
	DefaultMaxFrameBytes        = 4<<20 + 64<<10
	DefaultMaxRecordBytes       = 64 << 20
	DefaultMaxBatchBytes        = 1 << 20
	DefaultMinCompressBytes     = 1 << 10
	DefaultControlQueueLen      = 512
	DefaultAppendQueueLen       = 4096
	DefaultMaxQueueBytes        = 64 << 20
	DefaultReceiveRetainBytes   = 64 << 20
	DefaultDialTimeout          = time.Second
	DefaultHandshakeTimeout     = 2 * time.Second
	DefaultIdleTimeout          = 10 * time.Second
	DefaultWriteTimeout         = 5 * time.Second
	DefaultBackoffBase          = 50 * time.Millisecond
	DefaultBackoffMax           = 5 * time.Second
	DefaultSnapshotChunkBytes   = 1 << 20
	DefaultSnapshotWindowChunks = 4
	DefaultSnapshotAttempts     = 3

	protocolVersionMin = 1
	protocolVersionMax = 1
)

func orDefault[T int | time.Duration](v, d T) T {
	if v <= 0 {
		return d
	}
	return v
}

func (c *Config) withDefaults() (Config, error) {
	o := *c
	o.MaxFrameBytes = orDefault(o.MaxFrameBytes, DefaultMaxFrameBytes)
	o.MaxRecordBytes = orDefault(o.MaxRecordBytes, DefaultMaxRecordBytes)
	o.MaxBatchBytes = orDefault(o.MaxBatchBytes, DefaultMaxBatchBytes)
	o.MinCompressBytes = orDefault(o.MinCompressBytes, DefaultMinCompressBytes)
	o.ControlQueueLen = orDefault(o.ControlQueueLen, DefaultControlQueueLen)
	o.AppendQueueLen = orDefault(o.AppendQueueLen, DefaultAppendQueueLen)
	o.MaxQueueBytes = orDefault(o.MaxQueueBytes, DefaultMaxQueueBytes)
	o.ReceiveRetainBytes = orDefault(o.ReceiveRetainBytes, DefaultReceiveRetainBytes)
	o.DialTimeout = orDefault(o.DialTimeout, DefaultDialTimeout)
	o.HandshakeTimeout = orDefault(o.HandshakeTimeout, DefaultHandshakeTimeout)
	o.IdleTimeout = orDefault(o.IdleTimeout, DefaultIdleTimeout)
	o.WriteTimeout = orDefault(o.WriteTimeout, DefaultWriteTimeout)
	o.BackoffBase = orDefault(o.BackoffBase, DefaultBackoffBase)
	o.BackoffMax = orDefault(o.BackoffMax, DefaultBackoffMax)
	o.SnapshotChunkBytes = orDefault(o.SnapshotChunkBytes, DefaultSnapshotChunkBytes)
	o.SnapshotWindowChunks = orDefault(o.SnapshotWindowChunks, DefaultSnapshotWindowChunks)
	o.SnapshotAttempts = orDefault(o.SnapshotAttempts, DefaultSnapshotAttempts)
	if o.versionMin == 0 {
		o.versionMin, o.versionMax = protocolVersionMin, protocolVersionMax
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case o.LocalID == raftmsg.None:
		return o, errors.New("wire: LocalID is zero")
	case o.LocalName == "" || len(o.LocalName) > 255:
		return o, fmt.Errorf("wire: LocalName %q must be 1 to 255 bytes", o.LocalName)
	case o.Handler == nil:
		return o, errors.New("wire: no Handler")
	case o.MaxRecordBytes < o.MaxFrameBytes:
		return o, fmt.Errorf("wire: MaxRecordBytes %d < MaxFrameBytes %d", o.MaxRecordBytes, o.MaxFrameBytes)
	case o.MaxBatchBytes > o.MaxRecordBytes:
		return o, fmt.Errorf("wire: MaxBatchBytes %d > MaxRecordBytes %d", o.MaxBatchBytes, o.MaxRecordBytes)
	case o.SnapshotChunkBytes > o.MaxFrameBytes:
		return o, fmt.Errorf("wire: SnapshotChunkBytes %d > MaxFrameBytes %d", o.SnapshotChunkBytes, o.MaxFrameBytes)
	case o.MaxRecordBytes > 1<<31:
		return o, fmt.Errorf("wire: MaxRecordBytes %d over 2 GiB", o.MaxRecordBytes)
	}
	return o, nil
}
