package node

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/edgekv/edgekv/httpapi"
)

// BenchmarkPut measures a 128-byte put through the whole runtime (batcher,
// raft loop, persister, applier, waiter) of an in-process cluster over
// MemNetwork and MemStore: the runtime's own cost, without disks or
// sockets. Writers run in parallel (GOMAXPROCS × -cpu goroutines).
func BenchmarkPut(b *testing.B) {
	for _, size := range []int{1, 3} {
		b.Run(fmt.Sprintf("members=%d", size), func(b *testing.B) {
			c := newCluster(b, size)
			lead := c.leader()
			value := make([]byte, 128)
			var seq atomic.Uint64
			b.SetBytes(int64(len(value)))
			b.ReportAllocs()
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				key := make([]byte, 0, 32)
				for pb.Next() {
					key = fmt.Appendf(key[:0], "k%d", seq.Add(1)%4096)
					if _, err := lead.Backend().Put(ctx, httpapi.PutRequest{Key: key, Value: value}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkGet measures reads on a 3-member cluster's leader: stale (the
// published view) and linearizable (ReadIndex round, then the view).
func BenchmarkGet(b *testing.B) {
	c := newCluster(b, 3)
	lead := c.leader()
	put(b, lead, "k", "v")
	for _, cons := range []httpapi.Consistency{httpapi.Stale, httpapi.Linearizable} {
		b.Run(cons.String(), func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				req := httpapi.GetRequest{Key: []byte("k"), Consistency: cons}
				for pb.Next() {
					if _, err := lead.Backend().Get(ctx, req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
