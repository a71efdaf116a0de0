package relay

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"syscall"
)

// BatchConn goes under a *tls.Conn (tls.Server(relay.Batch(c, socket), cfg)) so that bulk transfers
// cost fewer system calls, in both directions.
//
// Writing: crypto/tls writes each record (at most 16 KiB of plaintext) to the connection below as
// soon as it is sealed, so a 64 KiB chunk would cost four writes. WriteChunk holds the BatchConn for
// the chunk's tls.Conn.Write and flushes once; every other write (the handshake's, alerts,
// close_notify) passes straight through. Writes made by other goroutines while a batch is held (a
// KeyUpdate answer from the reading side) join the batch, so records leave in the order TLS sealed
// them.
//
// Reading: once Pipe arms it (it does when it relays from the TLS connection above), a BatchConn
// reads the socket up to four full records at a time and hands TLS one record per read, so Pipe can see that
// another whole record is already here and decrypt it into the same chunk without waiting: several
// records read in one system call go out on the plain side in one write. Before it is armed (the
// handshake, the Trojan request, a spare waiting silently) it passes reads straight through. An idle
// armed BatchConn holds no buffer: it waits for the socket to become readable first.
type BatchConn struct {
	net.Conn
	mu   sync.Mutex
	held int     // holds not yet flushed: two writers holding at once share one batch
	buf  *[]byte // the batch while held; from batchPool

	// Reading, owned by the one goroutine that reads (TLS's Read, under its own lock).
	sock   syscall.RawConn // the socket below, to wait on without a buffer; nil: never armed
	armed  bool
	busy   bool    // a read filled the small read-ahead: read four records' worth from now on
	noWait bool    // Pipe is draining: a read that would need the socket fails with errWouldBlock
	rb     *[]byte // read-ahead, from readAheads; nil when nothing is buffered
	rr, rw int     // unread bytes are (*rb)[rr:rw]
	frame  framer  // TLS record framing of the bytes handed to TLS so far
}

// Batch wraps c for use under a *tls.Conn; socket is the connection whose socket c reads (c itself
// if nil). It exposes c with NetConn, so code that looks for the socket below TLS (TCP_INFO,
// half-close) still finds it.
func Batch(c, socket net.Conn) *BatchConn {
	if socket == nil {
		socket = c
	}
	return &BatchConn{Conn: c, sock: socketOf(socket)}
}

// socketOf finds the socket under c through wrappers that expose the connection below with NetConn.
func socketOf(c net.Conn) syscall.RawConn {
	for range 8 {
		switch v := c.(type) {
		case syscall.Conn:
			rc, err := v.SyscallConn()
			if err != nil {
				return nil
			}
			return rc
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// NetConn returns the connection below.
func (b *BatchConn) NetConn() net.Conn { return b.Conn }

// batchCap holds the records of one BigBufferSize chunk: each record adds a 5-byte header, a 16-byte
// AEAD tag and (TLS 1.3) a content-type byte, or an 8-byte explicit nonce (TLS 1.2 AES-GCM).
const batchCap = BigBufferSize + (BigBufferSize/(16<<10)+1)*64

var batchPool = sync.Pool{New: func() any { b := make([]byte, 0, batchCap); return &b }}

// readAheadSize holds four records of the largest size TLS allows (16 KiB of plaintext plus at
// most 256 bytes of expansion, RFC 8446 §5.2), so one socket read can bring a whole chunk's worth.
const readAheadSize = 4 * (maxRecordPlaintext + 5 + 256)

// Write sends p, or appends it to the batch while one is held.
func (b *BatchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	if b.held > 0 {
		*b.buf = append(*b.buf, p...)
		b.mu.Unlock()
		return len(p), nil
	}
	b.mu.Unlock()
	return b.Conn.Write(p)
}

// hold starts a batch: writes are gathered until flush.
func (b *BatchConn) hold() {
	b.mu.Lock()
	if b.held == 0 {
		b.buf = batchPool.Get().(*[]byte)
	}
	b.held++
	b.mu.Unlock()
}

// flush writes the batch in one call and ends it (the last of concurrent holds does). It returns how
// many of the batch's bytes were written and how many it held.
func (b *BatchConn) flush() (written, held int, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.held--; b.held > 0 {
		return 0, 0, nil
	}
	buf := *b.buf
	if len(buf) > 0 {
		written, err = b.Conn.Write(buf)
	}
	held = len(buf)
	*b.buf = buf[:0]
	if cap(buf) <= batchCap { // a batch that grew past a chunk's records is not kept
		batchPool.Put(b.buf)
	}
	b.buf = nil
	return written, held, err
}

// errWouldBlock ends a draining read that would have to wait for the socket. It is a temporary
// timeout, which crypto/tls passes up without marking the connection broken.
var errWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "relay: no whole record buffered" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// Read hands TLS the next bytes: straight from the connection below until armed; then from the
// read-ahead, at most up to the end of the current record.
func (b *BatchConn) Read(p []byte) (int, error) {
	if !b.armed {
		n, err := b.Conn.Read(p)
		b.frame.advance(p[:n])
		return n, err
	}
	if b.rb == nil {
		if err := b.fill(); err != nil {
			return 0, err
		}
	}
	avail := (*b.rb)[b.rr:b.rw]
	n := copy(p, avail[:min(len(avail), b.frame.toEnd(avail))])
	b.frame.advance(p[:n])
	if b.rr += n; b.rr == b.rw {
		readAheads.put(b.rb)
		b.rb = nil
	}
	return n, nil
}

// fill reads once from the socket into a fresh read-ahead buffer, holding none while it waits
// (readSocket). In noWait mode it fails with errWouldBlock instead of waiting.
func (b *BatchConn) fill() error {
	// One record's worth until a read fills it: most connections are not bulk transfers.
	rb, n, err := readSocket(b.sock, readAheads, b.busy, b.noWait)
	if err != nil {
		if errors.Is(err, syscall.EAGAIN) {
			return errWouldBlock
		}
		return err
	}
	b.rb, b.rr, b.rw = rb, 0, n
	b.busy = b.busy || n == len(*rb)
	return nil
}

// wait returns once the read-ahead holds bytes (reading the socket, waiting without a buffer while
// it has none), or with the socket's error or deadline.
func (b *BatchConn) wait() error {
	if b.rb != nil {
		return nil
	}
	return b.fill()
}

// arm switches reading to the read-ahead, where the socket below is known and can be read without
// waiting (Unix), and reports whether it did.
func (b *BatchConn) arm() bool {
	b.armed = b.armed || b.sock != nil && readAheadWorks
	return b.armed
}

// nextFits reports whether the read-ahead holds (or, read from the socket without waiting, now
// holds) the rest of the record TLS is reading and that record's plaintext surely fits in n bytes
// (its remaining ciphertext does).
func (b *BatchConn) nextFits(n int) bool {
	if b.rb == nil {
		b.noWait = true
		err := b.fill()
		b.noWait = false
		if err != nil {
			return false // the socket's error, if any, comes back on the next read
		}
	}
	avail := (*b.rb)[b.rr:b.rw]
	end := b.frame.toEnd(avail)
	return end <= len(avail) && end <= n
}

// pending reports whether the read-ahead holds bytes TLS has not read.
func (b *BatchConn) pending() bool { return b.rb != nil && b.rr < b.rw }

// framer follows the TLS record framing of a byte stream: a 5-byte header (type, version, length)
// and then length bytes of body.
type framer struct {
	hdr  [5]byte
	nh   int // header bytes seen of the record being read; 5 once its length is known
	body int // body bytes of that record not seen yet
}

// advance moves the framing past b.
func (f *framer) advance(b []byte) {
	for len(b) > 0 {
		if f.nh < 5 {
			k := copy(f.hdr[f.nh:], b)
			f.nh += k
			b = b[k:]
			if f.nh == 5 {
				f.body = int(binary.BigEndian.Uint16(f.hdr[3:]))
			}
		} else {
			k := min(f.body, len(b))
			f.body -= k
			b = b[k:]
		}
		if f.nh == 5 && f.body == 0 {
			f.nh = 0
		}
	}
}

// toEnd returns how many bytes, of the stream that continues with next, complete the current
// record; len(next)+1 or more when next does not hold enough of the header to tell.
func (f *framer) toEnd(next []byte) int {
	if f.nh == 5 {
		return f.body
	}
	need := 5 - f.nh
	if len(next) < need {
		return len(next) + 1
	}
	hdr := f.hdr
	copy(hdr[f.nh:], next[:need])
	return need + int(binary.BigEndian.Uint16(hdr[3:]))
}

// batchBelow returns the BatchConn directly under a *tls.Conn c, or nil.
func batchBelow(c net.Conn) *BatchConn {
	type netConner interface{ NetConn() net.Conn }
	nc, ok := c.(netConner)
	if !ok {
		return nil
	}
	b, _ := nc.NetConn().(*BatchConn)
	return b
}
