package node

import (
	"testing"

	"github.com/edgekv/edgekv/config"
	"github.com/edgekv/edgekv/wire"
)

// The largest request the API accepts becomes one Raft entry, which must fit
// one record of the peer protocol with room for its key and encoding: an
// entry over the record limit is dropped by the transport, and replication
// would retry it forever.
func TestLargestRequestFitsOneWireRecord(t *testing.T) {
	const keyAndEncodingBytes = 1 << 20 // a 4 KiB key and the command header, many times over
	if config.MaxRequestBytesLimit+keyAndEncodingBytes > wire.DefaultMaxRecordBytes {
		t.Fatalf("--max-request-bytes may reach %d, but a wire record holds %d", config.MaxRequestBytesLimit, wire.DefaultMaxRecordBytes)
	}
}
