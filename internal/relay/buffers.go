package relay

import "sync"

// sizedPool pools byte buffers of two sizes: a direction starts with small ones (most connections
// move a few KiB) and takes big ones once a read fills a small one.
type sizedPool struct {
	small, big       sync.Pool
	smallLen, bigLen int
}

func newSizedPool(small, big int) *sizedPool {
	p := &sizedPool{smallLen: small, bigLen: big}
	p.small.New = func() any { b := make([]byte, small); return &b }
	p.big.New = func() any { b := make([]byte, big); return &b }
	return p
}

func (p *sizedPool) get(big bool) *[]byte {
	if big {
		return p.big.Get().(*[]byte)
	}
	return p.small.Get().(*[]byte)
}

// put gives a buffer from get back to the pool of its size; nil is fine.
func (p *sizedPool) put(b *[]byte) {
	switch {
	case b == nil:
	case len(*b) == p.bigLen:
		p.big.Put(b)
	default:
		p.small.Put(b)
	}
}

var (
	// chunks are the relay's copy buffers.
	chunks = newSizedPool(BufferSize, BigBufferSize)
	// readAheads are a BatchConn's: one full record, or four (readAheadSize).
	readAheads = newSizedPool(maxRecordPlaintext+5+256, readAheadSize)
)
