// Package handshake opens every peer connection: the dialer sends a Hello
// naming who it is, whom it expects and what it speaks; the acceptor
// checks it and answers with a Hello of its own carrying the negotiated
// version, or the field that did not match. Only then do frames flow.
//
// Hello layout (all integers little-endian):
//
//	+------------+-----------+---------------------------+------------+
//	| "EKVHELLO" | bodyLen   | body (bodyLen bytes)      | CRC-32C    |
//	|     8B     |   u16     |                           | of body u32|
//	+------------+-----------+---------------------------+------------+
//
//	body:
//	+--------+--------+---------+--------+---------+-----------+----------+
//	| minVer | maxVer | cluster | lane   | codecs  | status u8 | field u8 |
//	|  u16   |  u16   |  u64    |  u8    | bitmask |           |          |
//	+--------+--------+---------+--------+---------+-----------+----------+
//	| senderID u64 | receiverID u64 | maxFrameBytes u32 | maxRecordBytes u32 |
//	+--------------+----------------+-------------------+-------------------+
//	| senderNameLen u8 | senderName | receiverNameLen u8 | receiverName     |
//	+------------------+------------+--------------------+------------------+
//	| extensions: up to MaxExtensionBytes, ignored by version 1               |
//	+-------------------------------------------------------------------------+
//
// Later versions may append fields in the extension area: a version-1 node
// still reads their Hello, answers with the version both speak, and the
// upgrade proceeds one node at a time.
//
// Versions: each side sends the range it speaks; both use the highest
// version in the intersection (a reply carries it as minVer == maxVer), so
// a cluster can be upgraded one node at a time.
//
// The package must never read more than MaxHelloBytes for a Hello, never
// panic on input, and never accept a connection whose fields differ from
// what the local node expects.
package handshake

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/edgekv/edgekv/consensus/raftmsg"
)

// Magic opens every Hello.
const Magic = "EKVHELLO"

const (
	prefixBytes    = len(Magic) + 2
	fixedBodyBytes = 2 + 2 + 8 + 1 + 1 + 1 + 1 + 8 + 8 + 4 + 4 + 1 + 1
	// MaxNameBytes bounds a node name in a Hello.
	MaxNameBytes = 255
	// MaxExtensionBytes bounds the fields later versions may add.
	MaxExtensionBytes = 256
	maxBodyBytes      = fixedBodyBytes + 2*MaxNameBytes + MaxExtensionBytes
	// MaxHelloBytes bounds a whole Hello on the wire.
	MaxHelloBytes = prefixBytes + maxBodyBytes + 4
)

// Status is the acceptor's verdict in a reply.
type Status uint8

const (
	StatusOK Status = iota
	StatusMismatch
	statusCount
)

// Field names what differed.
type Field uint8

const (
	FieldNone Field = iota
	FieldVersion
	FieldClusterID
	FieldSenderID
	FieldSenderName
	FieldReceiverID
	FieldReceiverName
	FieldLane
	FieldCodecs
	FieldLimits
	fieldCount
)

func (f Field) String() string {
	switch f {
	case FieldNone:
		return "none"
	case FieldVersion:
		return "version"
	case FieldClusterID:
		return "cluster id"
	case FieldSenderID:
		return "sender member id"
	case FieldSenderName:
		return "sender name"
	case FieldReceiverID:
		return "receiver member id"
	case FieldReceiverName:
		return "receiver name"
	case FieldLane:
		return "lane"
	case FieldCodecs:
		return "codecs"
	case FieldLimits:
		return "frame limits"
	}
	return fmt.Sprintf("field(%d)", uint8(f))
}

// Hello is one side's introduction.
type Hello struct {
	MinVersion, MaxVersion uint16
	ClusterID              uint64
	// Lane says what the connection carries (the transport defines lanes).
	Lane uint8
	// Codecs is a bitmask: bit c set when frame.Codec c can be decoded.
	Codecs uint8
	// Status and Field are meaningful in a reply only.
	Status Status
	Field  Field
	// Sender is the side writing this Hello, Receiver the side it expects.
	SenderID, ReceiverID     raftmsg.NodeID
	MaxFrameBytes            uint32
	MaxRecordBytes           uint32
	SenderName, ReceiverName string
}

// ErrMalformed wraps every decoding failure.
var ErrMalformed = errors.New("handshake: malformed hello")

// MismatchError says which field differed and how.
type MismatchError struct {
	Field         Field
	Local, Remote string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("handshake: %s differs: local %s, remote %s", e.Field, e.Local, e.Remote)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Append appends the encoding of h to dst.
func Append(dst []byte, h *Hello) ([]byte, error) {
	if len(h.SenderName) > MaxNameBytes || len(h.ReceiverName) > MaxNameBytes {
		return dst, fmt.Errorf("handshake: name longer than %d bytes", MaxNameBytes)
	}
	bodyLen := fixedBodyBytes + len(h.SenderName) + len(h.ReceiverName)
	dst = append(dst, Magic...)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(bodyLen))
	start := len(dst)
	dst = binary.LittleEndian.AppendUint16(dst, h.MinVersion)
	dst = binary.LittleEndian.AppendUint16(dst, h.MaxVersion)
	dst = binary.LittleEndian.AppendUint64(dst, h.ClusterID)
	dst = append(dst, h.Lane, h.Codecs, byte(h.Status), byte(h.Field))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(h.SenderID))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(h.ReceiverID))
	dst = binary.LittleEndian.AppendUint32(dst, h.MaxFrameBytes)
	dst = binary.LittleEndian.AppendUint32(dst, h.MaxRecordBytes)
	dst = append(dst, byte(len(h.SenderName)))
	dst = append(dst, h.SenderName...)
	dst = append(dst, byte(len(h.ReceiverName)))
	dst = append(dst, h.ReceiverName...)
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli)), nil
}

// Write sends h in one write.
func Write(w io.Writer, h *Hello) error {
	b, err := Append(make([]byte, 0, MaxHelloBytes), h)
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("handshake: write: %w", err)
	}
	return nil
}

// Read reads one Hello, never more than MaxHelloBytes. The caller sets the
// deadline on the connection.
func Read(r io.Reader) (Hello, error) {
	var buf [MaxHelloBytes]byte
	if _, err := io.ReadFull(r, buf[:prefixBytes]); err != nil {
		return Hello{}, fmt.Errorf("handshake: read: %w", err)
	}
	if string(buf[:len(Magic)]) != Magic {
		return Hello{}, fmt.Errorf("%w: bad magic %q", ErrMalformed, buf[:len(Magic)])
	}
	bodyLen := int(binary.LittleEndian.Uint16(buf[len(Magic):]))
	if bodyLen < fixedBodyBytes || bodyLen > maxBodyBytes {
		return Hello{}, fmt.Errorf("%w: body of %d bytes", ErrMalformed, bodyLen)
	}
	rest := buf[prefixBytes : prefixBytes+bodyLen+4]
	if _, err := io.ReadFull(r, rest); err != nil {
		return Hello{}, fmt.Errorf("handshake: read body: %w", err)
	}
	return Decode(buf[:prefixBytes+bodyLen+4])
}

// Decode parses one complete Hello.
func Decode(b []byte) (Hello, error) {
	if len(b) < prefixBytes+fixedBodyBytes+4 || string(b[:len(Magic)]) != Magic {
		return Hello{}, fmt.Errorf("%w: %d bytes without magic or body", ErrMalformed, len(b))
	}
	bodyLen := int(binary.LittleEndian.Uint16(b[len(Magic):]))
	if bodyLen > maxBodyBytes || len(b) != prefixBytes+bodyLen+4 {
		return Hello{}, fmt.Errorf("%w: body length %d in %d bytes", ErrMalformed, bodyLen, len(b))
	}
	body := b[prefixBytes : prefixBytes+bodyLen]
	if got, want := crc32.Checksum(body, castagnoli), binary.LittleEndian.Uint32(b[prefixBytes+bodyLen:]); got != want {
		return Hello{}, fmt.Errorf("%w: checksum %#x, want %#x", ErrMalformed, got, want)
	}
	h := Hello{
		MinVersion: binary.LittleEndian.Uint16(body[0:]),
		MaxVersion: binary.LittleEndian.Uint16(body[2:]),
		ClusterID:  binary.LittleEndian.Uint64(body[4:]),
		Lane:       body[12],
		Codecs:     body[13],
		Status:     Status(body[14]),
		Field:      Field(body[15]),
		SenderID:   raftmsg.NodeID(binary.LittleEndian.Uint64(body[16:])),
		ReceiverID: raftmsg.NodeID(binary.LittleEndian.Uint64(body[24:])),
	}
	h.MaxFrameBytes = binary.LittleEndian.Uint32(body[32:])
	h.MaxRecordBytes = binary.LittleEndian.Uint32(body[36:])
	rest := body[40:]
	n := int(rest[0])
	if 1+n+1 > len(rest) {
		return Hello{}, fmt.Errorf("%w: sender name of %d bytes", ErrMalformed, n)
	}
	h.SenderName = string(rest[1 : 1+n])
	rest = rest[1+n:]
	m := int(rest[0])
	if 1+m > len(rest) {
		return Hello{}, fmt.Errorf("%w: receiver name of %d bytes with %d left", ErrMalformed, m, len(rest)-1)
	}
	h.ReceiverName = string(rest[1 : 1+m])
	// rest[1+m:] holds extensions of later versions: ignored here.
	switch {
	case h.MinVersion == 0 || h.MinVersion > h.MaxVersion:
		return Hello{}, fmt.Errorf("%w: version range [%d, %d]", ErrMalformed, h.MinVersion, h.MaxVersion)
	case h.Status >= statusCount:
		return Hello{}, fmt.Errorf("%w: unknown status %d", ErrMalformed, h.Status)
	case h.Field >= fieldCount:
		return Hello{}, fmt.Errorf("%w: unknown field %d", ErrMalformed, h.Field)
	}
	return h, nil
}

// Negotiate returns the highest version both ranges contain.
func Negotiate(localMin, localMax, remoteMin, remoteMax uint16) (uint16, bool) {
	v := min(localMax, remoteMax)
	return v, v >= max(localMin, remoteMin)
}

// Local is what this node expects of a Hello it accepts.
type Local struct {
	MinVersion, MaxVersion uint16
	ClusterID              uint64
	ID                     raftmsg.NodeID
	Name                   string
	// Lanes is a bitmask of the lanes this node accepts.
	Lanes uint32
	// Codecs is a bitmask of the codecs this node decodes (bit 0, none,
	// always set).
	Codecs uint8
	// PeerName returns the name of a known member, ok false if unknown.
	PeerName func(raftmsg.NodeID) (name string, ok bool)
}

// CheckHello validates a dialer's Hello against local. It returns the
// negotiated version, or a *MismatchError naming the first differing field.
func CheckHello(local *Local, h *Hello) (uint16, error) {
	mismatch := func(f Field, l, r any) (uint16, error) {
		return 0, &MismatchError{Field: f, Local: fmt.Sprint(l), Remote: fmt.Sprint(r)}
	}
	v, ok := Negotiate(local.MinVersion, local.MaxVersion, h.MinVersion, h.MaxVersion)
	switch {
	case !ok:
		return mismatch(FieldVersion, fmt.Sprintf("[%d,%d]", local.MinVersion, local.MaxVersion), fmt.Sprintf("[%d,%d]", h.MinVersion, h.MaxVersion))
	case h.ClusterID != local.ClusterID:
		return mismatch(FieldClusterID, fmt.Sprintf("%#x", local.ClusterID), fmt.Sprintf("%#x", h.ClusterID))
	case h.ReceiverID != local.ID:
		return mismatch(FieldReceiverID, fmt.Sprintf("%#x", uint64(local.ID)), fmt.Sprintf("%#x", uint64(h.ReceiverID)))
	case h.ReceiverName != local.Name:
		return mismatch(FieldReceiverName, local.Name, h.ReceiverName)
	case h.Lane >= 32 || local.Lanes&(1<<h.Lane) == 0:
		return mismatch(FieldLane, fmt.Sprintf("mask %#x", local.Lanes), h.Lane)
	case h.Codecs&1 == 0:
		return mismatch(FieldCodecs, fmt.Sprintf("%#x", local.Codecs), fmt.Sprintf("%#x", h.Codecs))
	case h.MaxFrameBytes == 0 || h.MaxRecordBytes < h.MaxFrameBytes:
		return mismatch(FieldLimits, "frame <= record", fmt.Sprintf("frame %d record %d", h.MaxFrameBytes, h.MaxRecordBytes))
	case h.SenderID == raftmsg.None || h.SenderID == local.ID:
		return mismatch(FieldSenderID, "a peer's id", fmt.Sprintf("%#x", uint64(h.SenderID)))
	}
	name, known := local.PeerName(h.SenderID)
	switch {
	case !known:
		return mismatch(FieldSenderID, "a known member", fmt.Sprintf("unknown %#x", uint64(h.SenderID)))
	case name != h.SenderName:
		return mismatch(FieldSenderName, name, h.SenderName)
	}
	return v, nil
}

// Expect is what a dialer expects of the acceptor's reply.
type Expect struct {
	MinVersion, MaxVersion uint16
	ClusterID              uint64
	LocalID                raftmsg.NodeID
	PeerID                 raftmsg.NodeID
	PeerName               string
}

// CheckReply validates the acceptor's reply and returns the version it
// chose. A refusal comes back as a *MismatchError with the acceptor's
// field.
func CheckReply(e *Expect, h *Hello) (uint16, error) {
	mismatch := func(f Field, l, r any) (uint16, error) {
		return 0, &MismatchError{Field: f, Local: fmt.Sprint(l), Remote: fmt.Sprint(r)}
	}
	switch {
	case h.Status == StatusMismatch:
		return mismatch(h.Field, "ours", "refused by peer")
	case h.MinVersion != h.MaxVersion || h.MaxVersion < e.MinVersion || h.MaxVersion > e.MaxVersion:
		return mismatch(FieldVersion, fmt.Sprintf("[%d,%d]", e.MinVersion, e.MaxVersion), fmt.Sprintf("[%d,%d]", h.MinVersion, h.MaxVersion))
	case h.ClusterID != e.ClusterID:
		return mismatch(FieldClusterID, fmt.Sprintf("%#x", e.ClusterID), fmt.Sprintf("%#x", h.ClusterID))
	case h.SenderID != e.PeerID:
		return mismatch(FieldSenderID, fmt.Sprintf("%#x", uint64(e.PeerID)), fmt.Sprintf("%#x", uint64(h.SenderID)))
	case h.SenderName != e.PeerName:
		return mismatch(FieldSenderName, e.PeerName, h.SenderName)
	case h.ReceiverID != e.LocalID:
		return mismatch(FieldReceiverID, fmt.Sprintf("%#x", uint64(e.LocalID)), fmt.Sprintf("%#x", uint64(h.ReceiverID)))
	case h.MaxFrameBytes == 0 || h.MaxRecordBytes < h.MaxFrameBytes:
		return mismatch(FieldLimits, "frame <= record", fmt.Sprintf("frame %d record %d", h.MaxFrameBytes, h.MaxRecordBytes))
	}
	return h.MaxVersion, nil
}
