package netlab

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fwHarness runs a forwarder between socketpairs: the test writes and reads
// packets at the far ends, where the kernel's TUN devices would be. It
// needs no privileges.
type fwHarness struct {
	fw     *forwarder
	a      *os.File   // test's end of side A
	bs     []*os.File // test's ends of the B sides
	faults faultSet
	steer  steering
	atob   Direction
	btoa   Direction
}

// packetPair returns two connected UDP sockets on loopback as files: like
// a TUN device they keep packet boundaries. (AF_UNIX datagram sockets would
// stall writers after net.unix.max_dgram_qlen = 10 queued packets.)
func packetPair(t testing.TB) (mine, theirs *os.File) {
	t.Helper()
	var fds [2]int
	var addrs [2]unix.Sockaddr
	for i := range fds {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatalf("socket: %v", err)
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			t.Fatalf("bind: %v", err)
		}
		if addrs[i], err = unix.Getsockname(fd); err != nil {
			t.Fatalf("getsockname: %v", err)
		}
		fds[i] = fd
	}
	for i := range fds {
		if err := unix.Connect(fds[i], addrs[1-i]); err != nil {
			t.Fatalf("connect: %v", err)
		}
	}
	return os.NewFile(uintptr(fds[0]), "test"), os.NewFile(uintptr(fds[1]), "fw")
}

func newHarness(t testing.TB, nb int, opts LinkOptions) *fwHarness {
	t.Helper()
	opts = opts.withDefaults()
	h := &fwHarness{}
	h.faults.set(opts.Faults)
	h.atob.apply(opts)
	h.btoa.apply(opts)
	h.steer.n = nb
	a, fa := packetPair(t)
	h.a = a
	var fbs []*os.File
	for range nb {
		b, fb := packetPair(t)
		h.bs = append(h.bs, b)
		fbs = append(fbs, fb)
	}
	fw, err := newForwarder(fa, fbs, opts.MTU, opts.QueueLen, opts.Seed, &h.faults, &h.steer, &h.atob, &h.btoa)
	if err != nil {
		t.Fatal(err)
	}
	h.fw = fw
	t.Cleanup(func() {
		if err := fw.stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
		a.Close()
		for _, b := range h.bs {
			b.Close()
		}
	})
	return h
}

// recv reads one packet from f, or returns nil after timeout.
func recv(t testing.TB, f *os.File, timeout time.Duration) []byte {
	t.Helper()
	buf := recvBuf[:]
	f.SetReadDeadline(time.Now().Add(timeout))
	n, err := f.Read(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return bytes.Clone(buf[:n])
}

var recvBuf [70000]byte // recv runs on the test goroutine only

func TestForwardDelayKeepsOrderAndTime(t *testing.T) {
	const delay, jitter = 5 * time.Millisecond, 2 * time.Millisecond
	h := newHarness(t, 1, LinkOptions{Delay: delay, Jitter: jitter})
	const n = 200
	sent := make(chan time.Time, n)
	go func() {
		for i := range n {
			sent <- time.Now()
			h.a.Write(tcpPacket(false, 1000, uint16(i), tcpFlagACK, nil, []byte{byte(i)}))
			time.Sleep(50 * time.Microsecond)
		}
	}()
	var lateness []time.Duration
	for i := range n {
		s := <-sent
		p := recv(t, h.bs[0], time.Second)
		if p == nil {
			t.Fatalf("packet %d lost", i)
		}
		lateness = append(lateness, time.Since(s)-delay)
		pi, _ := parsePacket(p)
		if int(pi.dport) != i {
			t.Fatalf("packet %d arrived as number %d: order not kept", pi.dport, i)
		}
	}
	slices.Sort(lateness)
	t.Logf("delay %v ± %v: lateness min %v median %v max %v", delay, jitter, lateness[0], lateness[n/2], lateness[n-1])
	if lateness[0] < -jitter {
		t.Errorf("a packet arrived %v before Delay, more than the jitter", -lateness[0])
	}
	if !raceEnabled && lateness[n/2] > jitter+time.Millisecond {
		t.Errorf("median lateness %v > jitter + 1 ms", lateness[n/2])
	}
	if st := h.atob.Stats(); st.Forwarded != n {
		t.Errorf("forwarded %d, want %d", st.Forwarded, n)
	}
}

func TestForwardDelayAccuracy(t *testing.T) {
	if raceEnabled {
		t.Skip("timing assertions are meaningless under the race detector; run without -race")
	}
	const delay = 10 * time.Millisecond
	h := newHarness(t, 1, LinkOptions{Delay: delay})
	pkt := tcpPacket(false, 1, 2, tcpFlagACK, nil, nil)
	for attempt := 1; attempt <= 3; attempt++ {
		var errs []time.Duration
		for range 30 {
			start := time.Now()
			h.a.Write(pkt)
			if recv(t, h.bs[0], time.Second) == nil {
				t.Fatal("packet lost")
			}
			errs = append(errs, time.Since(start)-delay)
		}
		slices.Sort(errs)
		med := errs[len(errs)/2]
		t.Logf("one-way delay error: min %v median %v max %v", errs[0], med, errs[len(errs)-1])
		if errs[0] < 0 {
			t.Fatalf("a packet arrived %v early", -errs[0])
		}
		if med <= 300*time.Microsecond {
			return
		}
	}
	t.Errorf("median delay error > 300µs in 3 attempts")
}

func TestForwardReorderWhenAsked(t *testing.T) {
	h := newHarness(t, 1, LinkOptions{Delay: 3 * time.Millisecond, Jitter: 3 * time.Millisecond, Reorder: true})
	const n = 200
	for i := range n {
		h.a.Write(tcpPacket(false, 1000, uint16(i), tcpFlagACK, nil, nil))
	}
	var order []int
	for range n {
		p := recv(t, h.bs[0], time.Second)
		if p == nil {
			t.Fatalf("lost after %d", len(order))
		}
		pi, _ := parsePacket(p)
		order = append(order, int(pi.dport))
	}
	if slices.IsSorted(order) {
		t.Errorf("jitter 3ms with Reorder did not reorder %d packets sent at once", n)
	}
}

func TestForwardLoss(t *testing.T) {
	h := newHarness(t, 1, LinkOptions{Loss: 0.25})
	const n = 4000
	pkt := tcpPacket(false, 1, 2, tcpFlagACK, nil, nil)
	var wg sync.WaitGroup
	got := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for recv(t, h.bs[0], 200*time.Millisecond) != nil {
			got++
		}
	}()
	for range n {
		h.a.Write(pkt)
	}
	wg.Wait()
	// 25% loss of 4000: mean 1000 lost, sd ≈ 27; allow 6 sd.
	lost := n - got
	if lost < 840 || lost > 1160 {
		t.Errorf("lost %d of %d at 25%%", lost, n)
	}
	if st := h.atob.Stats(); int(st.Lost) != lost {
		t.Errorf("Stats.Lost %d, counted %d", st.Lost, lost)
	}
}

func TestForwardRateLimit(t *testing.T) {
	if raceEnabled {
		t.Skip("timing assertions are meaningless under the race detector; run without -race")
	}
	const rate = 8_000_000 // 1 MB/s
	h := newHarness(t, 1, LinkOptions{Rate: rate})
	payload := make([]byte, 1000-40)
	pkt := tcpPacket(false, 1, 2, tcpFlagACK, nil, payload)
	const n = 100 // 100 kB: 100 ms at 1 MB/s
	start := time.Now()
	for range n {
		h.a.Write(pkt)
	}
	for i := range n {
		if recv(t, h.bs[0], time.Second) == nil {
			t.Fatalf("packet %d lost", i)
		}
	}
	el := time.Since(start)
	if el < 95*time.Millisecond || el > 130*time.Millisecond {
		t.Errorf("100 kB at 1 MB/s took %v, want about 100 ms", el)
	}
}

func TestForwardQueueLimitDrops(t *testing.T) {
	h := newHarness(t, 1, LinkOptions{Delay: 50 * time.Millisecond, QueueLen: 10})
	pkt := tcpPacket(false, 1, 2, tcpFlagACK, nil, nil)
	for range 30 {
		h.a.Write(pkt)
	}
	got := 0
	for recv(t, h.bs[0], 200*time.Millisecond) != nil {
		got++
	}
	if got != 10 || h.atob.Stats().QueueDrops != 20 {
		t.Errorf("queue of 10: got %d packets, %d queue drops; want 10 and 20", got, h.atob.Stats().QueueDrops)
	}
}

func TestForwardFaults(t *testing.T) {
	h := newHarness(t, 1, LinkOptions{})
	for _, v6 := range []bool{false, true} {
		synData := tcpPacket(v6, 1, 2, tcpFlagSYN, tfoOption, []byte("hello"))
		syn := tcpPacket(v6, 1, 2, tcpFlagSYN, tfoOption, nil)
		synack := tcpPacket(v6, 2, 1, tcpFlagSYN|tcpFlagACK, append([]byte{2, 4, 5, 0xb4}, tfoOption...), nil)
		data := tcpPacket(v6, 1, 2, tcpFlagACK, nil, []byte("hello"))

		h.fw.faults.set(Faults{DropSYNData: true})
		h.a.Write(synData)
		h.a.Write(syn)
		h.a.Write(data)
		if p := recv(t, h.bs[0], time.Second); !bytes.Equal(p, syn) {
			t.Errorf("v6=%v drop-syn-data: first packet through is not the dataless SYN", v6)
		}
		if p := recv(t, h.bs[0], time.Second); !bytes.Equal(p, data) {
			t.Errorf("v6=%v drop-syn-data: data segment did not pass", v6)
		}

		h.fw.faults.set(Faults{StripTFO: true})
		h.a.Write(synData)
		h.bs[0].Write(synack)
		for _, c := range []struct {
			name string
			in   []byte
			out  *os.File
		}{{"SYN", synData, h.bs[0]}, {"SYN-ACK", synack, h.a}} {
			p := recv(t, c.out, time.Second)
			if len(p) != len(c.in) {
				t.Fatalf("v6=%v strip-tfo %s: got %d bytes, want %d", v6, c.name, len(p), len(c.in))
			}
			pi, _ := parsePacket(p)
			if hasOption(p, &pi, tcpOptFastOpen) {
				t.Errorf("v6=%v strip-tfo %s: option 34 still there", v6, c.name)
			}
			if c.name == "SYN-ACK" && !hasOption(p, &pi, 2) {
				t.Errorf("v6=%v strip-tfo %s: MSS option lost", v6, c.name)
			}
			if !checksumOK(p, &pi) {
				t.Errorf("v6=%v strip-tfo %s: bad TCP checksum", v6, c.name)
			}
			if !bytes.Equal(p[pi.end-pi.payloadLen:], c.in[pi.end-pi.payloadLen:]) {
				t.Errorf("v6=%v strip-tfo %s: payload changed", v6, c.name)
			}
		}

		h.fw.faults.set(Faults{Blackhole: true})
		h.a.Write(data)
		h.bs[0].Write(data)
		if recv(t, h.bs[0], 50*time.Millisecond) != nil || recv(t, h.a, 10*time.Millisecond) != nil {
			t.Errorf("v6=%v blackhole let a packet through", v6)
		}
		h.fw.faults.set(Faults{})
		h.a.Write(data)
		if !bytes.Equal(recv(t, h.bs[0], time.Second), data) {
			t.Errorf("v6=%v: packet lost after the blackhole was lifted", v6)
		}
	}
	st := h.atob.Stats()
	if st.SYNDataDrop != 2 || st.TFOStripped != 2 || st.Blackholed != 2 {
		t.Errorf("A→B stats %+v: want 2 SYN-data drops, 2 strips, 2 blackholed", st)
	}
}

func TestForwardECMP(t *testing.T) {
	h := newHarness(t, 2, LinkOptions{})
	flow := func(sport uint16) []byte { return tcpPacket(false, sport, 80, tcpFlagACK, nil, nil) }
	landed := func(p []byte) int {
		t.Helper()
		if got := recv(t, h.bs[0], 20*time.Millisecond); got != nil {
			return 0
		}
		if got := recv(t, h.bs[1], 20*time.Millisecond); got != nil {
			return 1
		}
		t.Fatalf("packet landed nowhere")
		return -1
	}
	send := func(p []byte) int { h.a.Write(p); return landed(p) }

	if got := send(flow(1)); got != 0 {
		t.Fatalf("first flow on host %d, want 0", got)
	}
	h.steer.target.Store(1) // SteerNewFlows(1)
	if got := send(flow(2)); got != 1 {
		t.Errorf("new flow after steering on host %d, want 1", got)
	}
	if got := send(flow(1)); got != 0 {
		t.Errorf("old flow after steering new flows moved to host %d, want 0", got)
	}
	h.steer.target.Store(0)
	h.steer.epoch.Add(1) // MoveAllFlows(0)
	if got := send(flow(2)); got != 0 {
		t.Errorf("flow after moving all flows on host %d, want 0", got)
	}
	// Replies from either B host reach A.
	for i, b := range h.bs {
		b.Write(flow(uint16(100 + i)))
		if recv(t, h.a, time.Second) == nil {
			t.Errorf("reply from B host %d did not reach A", i)
		}
	}
}

// TestForwardZeroAlloc shows the steady state allocates nothing, with and
// without the delay queue, with faults and loss switched on.
func TestForwardZeroAlloc(t *testing.T) {
	for _, c := range []struct {
		name string
		opts LinkOptions
	}{
		{"bypass", LinkOptions{Faults: Faults{StripTFO: true, DropSYNData: true}}},
		{"queued", LinkOptions{Delay: 20 * time.Microsecond, Jitter: 10 * time.Microsecond, Rate: 10_000_000_000, Faults: Faults{StripTFO: true}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, 2, c.opts)
			h.atob.SetLoss(0.0001)
			syn := tcpPacket(false, 1, 2, tcpFlagSYN, tfoOption, nil)
			buf := make([]byte, 2048)
			round := func() {
				h.a.Write(syn)
				h.bs[0].SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				h.bs[0].Read(buf)
			}
			for range 200 {
				round() // warm up: buffer pool, flow table
			}
			if allocs := testing.AllocsPerRun(500, round); allocs > 0 {
				t.Errorf("%v allocations per forwarded packet, want 0", allocs)
			}
		})
	}
}

// BenchmarkForward reports the cost of one packet through the forwarder
// (socketpair in, socketpair out, no delay) and its allocations.
func BenchmarkForward(b *testing.B) {
	h := newHarness(b, 1, LinkOptions{})
	pkt := tcpPacket(false, 1, 2, tcpFlagACK, nil, make([]byte, 1400))
	buf := make([]byte, 2048)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		h.a.Write(pkt)
		h.bs[0].Read(buf)
	}
}

// DropNonSYN passes SYNs (with or without data) and SYN-ACKs, and drops everything else of TCP:
// the final ACK of a handshake never reaches the server.
func TestForwardDropNonSYN(t *testing.T) {
	h := newHarness(t, 1, LinkOptions{Faults: Faults{DropNonSYN: true}})
	synData := tcpPacket(false, 1, 2, tcpFlagSYN, tfoOption, []byte("hello"))
	synack := tcpPacket(false, 2, 1, tcpFlagSYN|tcpFlagACK, nil, nil)
	ack := tcpPacket(false, 1, 2, tcpFlagACK, nil, nil)
	h.a.Write(ack)
	h.a.Write(synData)
	if p := recv(t, h.bs[0], time.Second); !bytes.Equal(p, synData) {
		t.Errorf("first packet through is not the SYN with data")
	}
	h.bs[0].Write(synack)
	if p := recv(t, h.a, time.Second); !bytes.Equal(p, synack) {
		t.Errorf("SYN-ACK did not pass")
	}
	h.bs[0].Write(ack)
	if recv(t, h.a, 50*time.Millisecond) != nil {
		t.Errorf("an ACK passed B→A")
	}
	if st := h.atob.Stats(); st.NonSYNDrop != 1 || st.Forwarded != 1 {
		t.Errorf("A→B stats %+v: want 1 non-SYN drop, 1 forwarded", st)
	}
	h.fw.faults.set(Faults{})
	h.a.Write(ack)
	if !bytes.Equal(recv(t, h.bs[0], time.Second), ack) {
		t.Errorf("ACK lost after the fault was lifted")
	}
}

// With a seed, random loss drops the same packets (by position) in every run.
func TestForwardLossSeed(t *testing.T) {
	pattern := func(seed uint64) []bool {
		h := newHarness(t, 1, LinkOptions{Loss: 0.3, Seed: seed})
		const n = 200
		got := make([]bool, n)
		for i := range n {
			h.a.Write(tcpPacket(false, 1000, uint16(i), tcpFlagACK, nil, nil))
			if p := recv(t, h.bs[0], 20*time.Millisecond); p != nil {
				pi, _ := parsePacket(p)
				got[pi.dport] = true
			}
		}
		return got
	}
	a, b, c := pattern(7), pattern(7), pattern(8)
	if !slices.Equal(a, b) {
		t.Error("the same seed lost different packets")
	}
	if slices.Equal(a, c) {
		t.Error("different seeds lost the same packets")
	}
}

// A drop function sees every packet and drops those it chooses, counted as lost.
func TestForwardDropFunc(t *testing.T) {
	h := newHarness(t, 1, LinkOptions{})
	n := 0
	h.atob.SetDropFunc(func([]byte) bool { n++; return n%2 == 0 })
	for i := range 4 {
		h.a.Write(tcpPacket(false, 1000, uint16(i), tcpFlagACK, nil, nil))
	}
	for _, want := range []uint16{0, 2} {
		p := recv(t, h.bs[0], time.Second)
		if pi, _ := parsePacket(p); p == nil || pi.dport != want {
			t.Fatalf("got %v, want packet %d", p, want)
		}
	}
	if recv(t, h.bs[0], 50*time.Millisecond) != nil {
		t.Error("a packet the function dropped passed")
	}
	if st := h.atob.Stats(); st.Lost != 2 {
		t.Errorf("Lost %d, want 2", st.Lost)
	}
	h.atob.SetDropFunc(nil)
	h.a.Write(tcpPacket(false, 1000, 9, tcpFlagACK, nil, nil))
	if recv(t, h.bs[0], time.Second) == nil {
		t.Error("packet lost after the function was removed")
	}
}
