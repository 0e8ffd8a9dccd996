package consensus

// ring is a FIFO queue that reuses its storage: it allocates only when it
// must grow, so a steady state costs nothing.
type ring[T any] struct {
	buf   []T
	head  int
	count int
}

func (r *ring[T]) len() int { return r.count }

func (r *ring[T]) push(v T) {
	if r.count == len(r.buf) {
		grown := make([]T, max(8, 2*len(r.buf)))
		for i := 0; i < r.count; i++ {
			grown[i] = r.buf[(r.head+i)%len(r.buf)]
		}
		r.buf, r.head = grown, 0
	}
	r.buf[(r.head+r.count)%len(r.buf)] = v
	r.count++
}

// at returns a pointer to the i-th oldest element.
func (r *ring[T]) at(i int) *T { return &r.buf[(r.head+i)%len(r.buf)] }

func (r *ring[T]) pop() T {
	var zero T
	v := r.buf[r.head]
	r.buf[r.head] = zero
	r.head = (r.head + 1) % len(r.buf)
	r.count--
	return v
}
