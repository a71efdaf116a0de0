package relay

import (
	"bytes"
	"crypto/tls"
	"io"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// countingConn counts the Write calls that reach the connection it wraps.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// NetConn exposes the connection below, for half-close, as the wrappers in production do.
func (c *countingConn) NetConn() net.Conn { return c.Conn }

// batchedServer returns a TLS pair whose server side has a BatchConn below it, over a countingConn
// when count is set, and the counter.
func batchedServer(t *testing.T, batch bool) (client *tls.Conn, server *tls.Conn, under *countingConn) {
	t.Helper()
	client, _, server = tlsPairUnder(t, func(c *net.TCPConn) net.Conn {
		under = &countingConn{Conn: c}
		if batch {
			return Batch(under, c)
		}
		return under
	})
	return client, server, under
}

// Issue 17: a busy direction reads up to 64 KiB from the plain side at once; crypto/tls seals it into
// records (four, or many more while it still sizes records to one TCP segment on a young
// connection), and with a BatchConn below TLS they leave in one system call (one each without it).
// A direction starts with 16 KiB chunks: the first one, full, makes it busy.
func TestBatchedChunkLeavesInOneWrite(t *testing.T) {
	for _, tc := range []struct {
		batch bool
		want  int64
	}{{true, 2}, {false, 4}} { // without: at least 4
		client, server, under := batchedServer(t, tc.batch)
		plain, peer := tcpPair(t)
		// 60 KiB in all, which loopback's initial receive window takes at once.
		data := make([]byte, BufferSize+44<<10)
		rand.NewChaCha8([32]byte{1}).Read(data)
		if _, err := peer.Write(data); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // all of it in plain's receive queue: two reads take it
		w0 := under.writes.Load()
		go func() { _, _, _ = Pipe(server, plain, time.Minute) }()
		got := make([]byte, len(data))
		client.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(client, got); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("batch %v: TLS peer read %d bytes, %v; want the chunks intact", tc.batch, len(got), err)
		}
		if n := under.writes.Load() - w0; n != tc.want && !(!tc.batch && n >= tc.want) {
			t.Errorf("batch %v: a 16 KiB and a 44 KiB chunk took %d writes below TLS, want %d", tc.batch, n, tc.want)
		}
	}
}

// Issue 17: a short connection (a request one way, a few KiB back, as most connections are) moves
// its chunks in 16 KiB buffers both ways and never takes a 64 KiB one: only a chunk that comes back
// full makes a direction busy.
func TestShortConnectionKeepsSmallChunks(t *testing.T) {
	var bigDirections atomic.Int64
	wentBig = func() { bigDirections.Add(1) }
	t.Cleanup(func() { wentBig = nil })
	client, server, _ := batchedServer(t, true)
	plain, peer := tcpPair(t)
	done := make(chan error, 1)
	before := bigDirections.Load()
	go func() { _, _, err := Pipe(server, plain, time.Minute); done <- err }()
	request := bytes.Repeat([]byte("r"), 400)
	answer := bytes.Repeat([]byte("a"), 6<<10)
	_ = client.SetDeadline(time.Now().Add(5 * time.Second))
	_ = peer.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Write(request); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(peer, make([]byte, len(request))); err != nil {
		t.Fatal(err)
	}
	if _, err := peer.Write(answer); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(client, make([]byte, len(answer))); err != nil {
		t.Fatal(err)
	}
	_ = peer.Close()
	_ = client.Close()
	<-done
	if n := bigDirections.Load() - before; n != 0 {
		t.Errorf("a 400-byte request and a 6 KiB answer: %d directions took 64 KiB chunks, want none", n)
	}
	// The same tunnel shape with a bulk answer does take them (the check above can fail).
	client, server, _ = batchedServer(t, true)
	plain, peer = tcpPair(t)
	before = bigDirections.Load()
	go func() { _, _, err := Pipe(server, plain, time.Minute); done <- err }()
	bulk := make([]byte, 1<<20)
	go func() { _, _ = peer.Write(bulk); _ = peer.Close() }()
	_ = client.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(client, make([]byte, len(bulk))); err != nil {
		t.Fatal(err)
	}
	_ = client.Close()
	<-done
	if n := bigDirections.Load() - before; n == 0 {
		t.Error("a 1 MiB answer took no 64 KiB chunk")
	}
}

// Records TLS read before the relay armed the read-ahead (the server reads the request that way, and
// one read may bring several records, a close_notify too) are relayed without waiting for the socket:
// the peer sent everything and waits for the end of the stream.
func TestRecordsBufferedBeforeArmingAreRelayed(t *testing.T) {
	client, server, _ := batchedServer(t, true)
	plain, peer := tcpPair(t)
	for _, part := range []string{"request", " and more"} {
		if _, err := client.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.CloseWrite(); err != nil { // close_notify
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // all three records in the server's receive queue
	_ = server.SetReadDeadline(time.Now().Add(5 * time.Second))
	first := make([]byte, 7)
	if _, err := io.ReadFull(server, first); err != nil || string(first) != "request" {
		t.Fatalf("first record: %q, %v", first, err)
	}
	done := make(chan error, 1)
	go func() { _, _, err := Pipe(server, plain, time.Minute); done <- err }()
	_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
	rest, err := io.ReadAll(peer) // EOF once the close_notify went through
	if err != nil || string(rest) != " and more" {
		t.Fatalf("relayed %q, %v; want %q and the end of the stream", rest, err, " and more")
	}
	_ = peer.Close()
	_ = client.Close()
	<-done
}

// Issue 17: the records already received are decrypted into one chunk and reach the plain side in
// one write (once the direction is busy, as above: a 16 KiB chunk, then the rest, 44 KiB); without a
// BatchConn each record is its own write.
func TestBatchedRecordsLeaveInOneWrite(t *testing.T) {
	for _, tc := range []struct {
		batch bool
		want  int64
	}{{true, 2}, {false, 4}} { // without: at least 4
		client, server, _ := batchedServer(t, tc.batch)
		plain, peer := tcpPair(t)
		dst := &countingConn{Conn: plain}
		// 60 KiB in all, which loopback's initial receive window takes at once.
		data := make([]byte, BufferSize+44<<10)
		rand.NewChaCha8([32]byte{2}).Read(data)
		if _, err := client.Write(data); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // all the records in the server's receive queue
		go func() { _, _, _ = Pipe(server, dst, time.Minute) }()
		got := make([]byte, len(data))
		peer.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(peer, got); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("batch %v: plain peer read %d bytes, %v; want the records intact", tc.batch, len(got), err)
		}
		if n := dst.writes.Load(); n != tc.want && !(!tc.batch && n >= tc.want) {
			t.Errorf("batch %v: 60 KiB of records took %d writes on the plain side, want %d", tc.batch, n, tc.want)
		}
	}
}

// A tunnel through batched TLS carries random traffic both ways intact, with pauses that leave
// the read-ahead empty (the relay then waits without a buffer) and records of every size.
func TestBatchedPipeCarriesEverything(t *testing.T) {
	client, server, _ := batchedServer(t, true)
	plain, peer := tcpPair(t)
	done := make(chan result, 1)
	go func() {
		x, y, err := Pipe(server, plain, time.Minute)
		done <- result{x, y, err}
	}()
	rng := rand.New(rand.NewPCG(3, 4))
	var sentUp, sentDown bytes.Buffer
	errc := make(chan error, 2)
	recvUp, recvDown := new(bytes.Buffer), new(bytes.Buffer)
	go func() { _, err := io.Copy(recvUp, peer); errc <- err }()
	go func() { _, err := io.Copy(recvDown, client); errc <- err }()
	for i := range 200 {
		b := make([]byte, rng.IntN(3*maxRecordPlaintext)+1)
		rand.NewChaCha8([32]byte{byte(i)}).Read(b)
		if i%2 == 0 {
			sentUp.Write(b)
			_, _ = client.Write(b)
		} else {
			sentDown.Write(b)
			_, _ = peer.Write(b)
		}
		if rng.IntN(10) == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	_ = client.CloseWrite()
	_ = peer.CloseWrite()
	for range 2 {
		select {
		case err := <-errc:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("copies did not end: up %d of %d bytes, down %d of %d", recvUp.Len(), sentUp.Len(), recvDown.Len(), sentDown.Len())
		}
	}
	if !bytes.Equal(recvUp.Bytes(), sentUp.Bytes()) || !bytes.Equal(recvDown.Bytes(), sentDown.Bytes()) {
		t.Fatalf("up %d of %d bytes, down %d of %d: not intact", recvUp.Len(), sentUp.Len(), recvDown.Len(), sentDown.Len())
	}
	if r := <-done; r.err != nil || r.aToB != int64(sentUp.Len()) || r.bToA != int64(sentDown.Len()) {
		t.Fatalf("Pipe = %+v", r)
	}
}

// FuzzFramer: the framing of a byte stream does not depend on how it is cut, and toEnd names
// exactly the bytes that end the current record. The stream is whatever a peer sends.
func FuzzFramer(f *testing.F) {
	f.Add([]byte{23, 3, 3, 0, 2, 'h', 'i', 23, 3, 3, 0, 0, 21, 3}, uint16(3))
	f.Add([]byte{22, 3, 1, 0xff, 0xff, 1}, uint16(1))
	f.Fuzz(func(t *testing.T, stream []byte, cut uint16) {
		var whole, parts framer
		whole.advance(stream)
		k := int(cut) % (len(stream) + 1)
		parts.advance(stream[:k])
		parts.advance(stream[k:])
		if whole != parts {
			t.Fatalf("framing after the whole stream %+v, after two parts %+v", whole, parts)
		}
		var fr framer
		rest := stream
		for len(rest) > 0 {
			n := fr.toEnd(rest)
			if n > len(rest) {
				fr.advance(rest)
				break
			}
			fr.advance(rest[:n])
			if fr.nh != 0 || fr.body != 0 {
				t.Fatalf("after toEnd's %d bytes the framer is mid-record: %+v", n, fr)
			}
			rest = rest[n:]
		}
	})
}
