package handshake

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"reflect"
	"testing"

	"github.com/edgekv/edgekv/consensus/raftmsg"
)

func sampleHello() Hello {
	return Hello{MinVersion: 1, MaxVersion: 3, ClusterID: 0xabc, Lane: 1, Codecs: 0b111,
		SenderID: 11, ReceiverID: 22, MaxFrameBytes: 1 << 20, MaxRecordBytes: 1 << 24,
		SenderName: "n1", ReceiverName: "n2"}
}

func sampleLocal() *Local {
	return &Local{MinVersion: 1, MaxVersion: 2, ClusterID: 0xabc, ID: 22, Name: "n2", Lanes: 0b111, Codecs: 0b111,
		PeerName: func(id raftmsg.NodeID) (string, bool) {
			if id == 11 {
				return "n1", true
			}
			return "", false
		}}
}

func TestRoundTrip(t *testing.T) {
	h := sampleHello()
	h.Status, h.Field = StatusMismatch, FieldClusterID
	var buf bytes.Buffer
	if err := Write(&buf, &h); err != nil {
		t.Fatal(err)
	}
	got, err := Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, h) {
		t.Fatalf("got %+v want %+v", got, h)
	}
}

// TestExtensionsOfLaterVersionsAreIgnored: a Hello from a later version
// with extra fields appended still decodes, so nodes can be upgraded one
// at a time.
func TestExtensionsOfLaterVersionsAreIgnored(t *testing.T) {
	h := sampleHello()
	b, _ := Append(nil, &h)
	body := b[prefixBytes : len(b)-4]
	ext := append(bytes.Clone(body), bytes.Repeat([]byte{0xAB}, MaxExtensionBytes)...)
	withExt := append([]byte(Magic), byte(len(ext)), byte(len(ext)>>8))
	withExt = append(withExt, ext...)
	withExt = binary.LittleEndian.AppendUint32(withExt, crc32.Checksum(ext, castagnoli))
	got, err := Read(bytes.NewReader(withExt))
	if err != nil || !reflect.DeepEqual(got, h) {
		t.Fatalf("hello with extensions: %+v, %v", got, err)
	}
	big := append(bytes.Clone(body), make([]byte, maxBodyBytes+1-len(body))...)
	tooLong := append([]byte(Magic), byte(len(big)), byte(len(big)>>8))
	tooLong = append(tooLong, big...)
	tooLong = binary.LittleEndian.AppendUint32(tooLong, crc32.Checksum(big, castagnoli))
	if _, err := Read(bytes.NewReader(tooLong)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a body beyond the bound accepted: %v", err)
	}
}

func TestNegotiate(t *testing.T) {
	for _, tc := range []struct {
		lmin, lmax, rmin, rmax, want uint16
		ok                           bool
	}{
		{1, 1, 1, 1, 1, true},
		{1, 3, 1, 2, 2, true}, // old peer: speak its highest
		{1, 2, 1, 3, 2, true}, // new peer: speak ours
		{2, 3, 1, 5, 3, true},
		{3, 4, 1, 2, 0, false},
		{1, 2, 3, 4, 0, false},
	} {
		v, ok := Negotiate(tc.lmin, tc.lmax, tc.rmin, tc.rmax)
		if ok != tc.ok || (ok && v != tc.want) {
			t.Errorf("Negotiate(%d,%d,%d,%d) = %d,%v want %d,%v", tc.lmin, tc.lmax, tc.rmin, tc.rmax, v, ok, tc.want, tc.ok)
		}
	}
}

func TestCheckHelloNamesTheField(t *testing.T) {
	v, err := CheckHello(sampleLocal(), ptr(sampleHello()))
	if err != nil || v != 2 {
		t.Fatalf("good hello: version %d, %v", v, err)
	}
	for _, tc := range []struct {
		field Field
		edit  func(h *Hello)
	}{
		{FieldVersion, func(h *Hello) { h.MinVersion, h.MaxVersion = 3, 4 }},
		{FieldClusterID, func(h *Hello) { h.ClusterID++ }},
		{FieldReceiverID, func(h *Hello) { h.ReceiverID = 99 }},
		{FieldReceiverName, func(h *Hello) { h.ReceiverName = "n3" }},
		{FieldLane, func(h *Hello) { h.Lane = 5 }},
		{FieldLane, func(h *Hello) { h.Lane = 200 }},
		{FieldCodecs, func(h *Hello) { h.Codecs = 0b110 }},
		{FieldLimits, func(h *Hello) { h.MaxRecordBytes = 10 }},
		{FieldSenderID, func(h *Hello) { h.SenderID = 0 }},
		{FieldSenderID, func(h *Hello) { h.SenderID = 22 }},
		{FieldSenderID, func(h *Hello) { h.SenderID = 33 }},
		{FieldSenderName, func(h *Hello) { h.SenderName = "impostor" }},
	} {
		h := sampleHello()
		tc.edit(&h)
		_, err := CheckHello(sampleLocal(), &h)
		var me *MismatchError
		if !errors.As(err, &me) || me.Field != tc.field {
			t.Errorf("%s: got %v", tc.field, err)
		}
	}
}

func TestCheckReply(t *testing.T) {
	e := &Expect{MinVersion: 1, MaxVersion: 2, ClusterID: 0xabc, LocalID: 11, PeerID: 22, PeerName: "n2"}
	reply := Hello{MinVersion: 2, MaxVersion: 2, ClusterID: 0xabc, SenderID: 22, ReceiverID: 11, SenderName: "n2", ReceiverName: "n1", MaxFrameBytes: 1, MaxRecordBytes: 1}
	if v, err := CheckReply(e, &reply); err != nil || v != 2 {
		t.Fatalf("good reply: %d %v", v, err)
	}
	for _, tc := range []struct {
		field Field
		edit  func(h *Hello)
	}{
		{FieldClusterID, func(h *Hello) { h.Status, h.Field = StatusMismatch, FieldClusterID }},
		{FieldVersion, func(h *Hello) { h.MinVersion, h.MaxVersion = 3, 3 }},
		{FieldVersion, func(h *Hello) { h.MinVersion = 1 }},
		{FieldClusterID, func(h *Hello) { h.ClusterID = 1 }},
		{FieldSenderID, func(h *Hello) { h.SenderID = 23 }},
		{FieldSenderName, func(h *Hello) { h.SenderName = "x" }},
		{FieldReceiverID, func(h *Hello) { h.ReceiverID = 12 }},
		{FieldLimits, func(h *Hello) { h.MaxFrameBytes = 0 }},
	} {
		h := reply
		tc.edit(&h)
		_, err := CheckReply(e, &h)
		var me *MismatchError
		if !errors.As(err, &me) || me.Field != tc.field {
			t.Errorf("%s: got %v", tc.field, err)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestMalformedHellos(t *testing.T) {
	good, _ := Append(nil, ptr(sampleHello()))
	mut := func(f func(b []byte)) []byte { b := bytes.Clone(good); f(b); return b }
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"bad magic", mut(func(b []byte) { b[0] = 'X' })},
		{"body too long", mut(func(b []byte) { b[8], b[9] = 0xff, 0xff })},
		{"body too short", mut(func(b []byte) { b[8], b[9] = 3, 0 })},
		{"checksum", mut(func(b []byte) { b[12] ^= 1 })},
		{"truncated", good[:len(good)-1]},
	} {
		if _, err := Read(bytes.NewReader(tc.b)); err == nil {
			t.Errorf("%s: accepted", tc.name)
		} else if !errors.Is(err, ErrMalformed) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			t.Errorf("%s: unexpected error %v", tc.name, err)
		}
	}
	// Fields valid in isolation but inconsistent.
	for _, edit := range []func(h *Hello){
		func(h *Hello) { h.MinVersion = 0 },
		func(h *Hello) { h.MinVersion = 4 },
		func(h *Hello) { h.Status = 9 },
		func(h *Hello) { h.Field = 200 },
	} {
		h := sampleHello()
		edit(&h)
		b, _ := Append(nil, &h)
		if _, err := Decode(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%+v accepted: %v", h, err)
		}
	}
	if _, err := Append(nil, &Hello{SenderName: string(make([]byte, 256))}); err == nil {
		t.Error("over-long name encoded")
	}
}

// countingReader counts what Read consumes.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func FuzzRead(f *testing.F) {
	good, _ := Append(nil, ptr(sampleHello()))
	f.Add(good)
	f.Add([]byte(Magic))
	f.Fuzz(func(t *testing.T, data []byte) {
		cr := &countingReader{r: bytes.NewReader(data)}
		h, err := Read(cr)
		if cr.n > MaxHelloBytes {
			t.Fatalf("read %d bytes, more than MaxHelloBytes", cr.n)
		}
		if err != nil {
			return
		}
		b, err := Append(nil, &h)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Decode(b)
		if err != nil || !reflect.DeepEqual(again, h) {
			t.Fatalf("decoded hello does not survive a re-encoding: %v", err)
		}
	})
}
