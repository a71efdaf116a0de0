package labproxy_test

import (
	"context"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/tfo"
)

const proofRTT = 50 * time.Millisecond

// run makes n fetches after warm (untimed) ones and returns the TTFBs and the counter growth over
// the n fetches, failing the test on any fetch error.
func (r *rig) run(t *testing.T, warm, n int) ([]time.Duration, counters) {
	t.Helper()
	for i := range warm {
		if _, err := r.fetch(context.Background()); err != nil {
			t.Fatalf("warm-up fetch %d: %v", i, err)
		}
	}
	before := r.counters(t)
	ttfb := make([]time.Duration, 0, n)
	for i := range n {
		d, err := r.fetch(context.Background())
		if err != nil {
			t.Fatalf("fetch %d: %v", i, err)
		}
		ttfb = append(ttfb, d)
	}
	// The server reports a connection when it ends, just after the client got the response.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, conns := r.snapshot()
		if len(conns) >= warm+n || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return ttfb, r.counters(t).sub(before)
}

// The proof: with TFO on every leg, after one warm-up connection, 50 new proxied connections
// all show "accepted" on the client→server leg, the kernels count exactly 50 (client Active, server
// Passive), and the whole ClientHello rode in each SYN: the link saw 50 SYNs with data whose payload
// adds up to the ClientHello sizes, none above 1420 bytes. The server→origin leg carries the request
// in its SYN too.
func TestProofTFOAccepted(t *testing.T) {
	r := newRig(t, rigOptions{RTT: proofRTT, ClientTFO: true, ServerListen: true, ServerDial: true})
	const n = 50
	ttfb, grew := r.run(t, 1, n)
	hs, conns := r.snapshot()
	if len(hs) != n+1 {
		t.Fatalf("%d handshakes, want %d", len(hs), n+1)
	}
	var helloBytes uint64
	for i, h := range hs[1:] {
		if h.Err != nil || h.TFO != tfo.Accepted {
			t.Errorf("connection %d: outcome %s, err %v; want accepted", i+1, h.TFO, h.Err)
		}
		if h.HelloBytes > tfo.MaxSYNDataIPv4 {
			t.Errorf("connection %d: ClientHello %d bytes > %d", i+1, h.HelloBytes, tfo.MaxSYNDataIPv4)
		}
		helloBytes += uint64(h.HelloBytes)
	}
	if grew.clientActive != n || grew.serverPassive != n {
		t.Errorf("TCPFastOpenActive (client) +%d, TCPFastOpenPassive (server) +%d; want +%d each", grew.clientActive, grew.serverPassive, n)
	}
	if grew.synData != n || grew.synDataBytes != helloBytes {
		t.Errorf("link saw %d SYNs with %d payload bytes; want %d SYNs carrying the %d ClientHello bytes", grew.synData, grew.synDataBytes, n, helloBytes)
	}
	if max := r.p.Link.AtoB().Stats().SYNDataMaxBytes; max > tfo.MaxSYNDataIPv4 {
		t.Errorf("largest SYN payload %d > %d", max, tfo.MaxSYNDataIPv4)
	}
	// Server side: each accepted connection and each dial to the origin was a TFO success.
	if len(conns) != n+1 {
		t.Fatalf("server reported %d connections, want %d", len(conns), n+1)
	}
	for i, c := range conns[1:] {
		if c.Outcome != "connect" || c.TFOAccept != tfo.Accepted || !c.Dialed || c.TFODial != tfo.Accepted {
			t.Errorf("server connection %d: %s accept %s dial %s (dialed %v); want connect, accepted, accepted", i+1, c.Outcome, c.TFOAccept, c.TFODial, c.Dialed)
		}
	}
	if grew.serverActive != n || grew.originPassive != n {
		t.Errorf("server→origin: TCPFastOpenActive (server) +%d, TCPFastOpenPassive (origin) +%d; want +%d each", grew.serverActive, grew.originPassive, n)
	}
	med, p99 := inRTT(ttfb, proofRTT)
	t.Logf("TTFB with TFO: median %.2f RTT, p99 %.2f RTT (RTT %v, %d fetches)", med, p99, proofRTT, n)
}

// With TFO off on every leg the same run works and the kernels count nothing.
func TestProofTFOOff(t *testing.T) {
	r := newRig(t, rigOptions{RTT: proofRTT})
	const n = 50
	ttfb, grew := r.run(t, 1, n)
	if grew != (counters{}) {
		t.Errorf("TFO off, yet the counters grew: %+v", grew)
	}
	hs, conns := r.snapshot()
	for i, h := range hs {
		if h.TFO != tfo.NotAttempted {
			t.Errorf("connection %d: outcome %s, want not_attempted", i, h.TFO)
		}
	}
	for i, c := range conns {
		if c.TFOAccept != tfo.NotAttempted || c.TFODial != tfo.NotAttempted {
			t.Errorf("server connection %d: accept %s dial %s, want not_attempted", i, c.TFOAccept, c.TFODial)
		}
	}
	med, p99 := inRTT(ttfb, proofRTT)
	t.Logf("TTFB without TFO: median %.2f RTT, p99 %.2f RTT (RTT %v, %d fetches)", med, p99, proofRTT, n)
}

// With the server's sysctl lacking the server bit (0x2) everything works; the client learns from the
// kernel that its SYN got no cookie or its data was not accepted, and the server accepts no SYN data.
func TestProofServerWithoutServerBit(t *testing.T) {
	r := newRig(t, rigOptions{RTT: proofRTT, ClientTFO: true, ServerListen: true, ServerDial: true, ServerSysctl: 1})
	const n = 20
	_, grew := r.run(t, 1, n)
	hs, conns := r.snapshot()
	for i, h := range hs {
		if h.Err != nil || (h.TFO != tfo.CookieRequested && h.TFO != tfo.DataNotAccepted) {
			t.Errorf("connection %d: outcome %s, err %v; want cookie_requested or data_not_accepted", i, h.TFO, h.Err)
		}
	}
	for i, c := range conns {
		if c.TFOAccept != tfo.NotAttempted {
			t.Errorf("server connection %d: accept outcome %s, want not_attempted", i, c.TFOAccept)
		}
	}
	if grew.clientActive != 0 || grew.serverPassive != 0 {
		t.Errorf("TCPFastOpenActive (client) +%d, TCPFastOpenPassive (server) +%d; want 0", grew.clientActive, grew.serverPassive)
	}
}

// With session tickets on, resumed handshakes still fit their ClientHello (now with a PSK) in the SYN.
func TestProofResumedHelloInSYN(t *testing.T) {
	r := newRig(t, rigOptions{RTT: 10 * time.Millisecond, ClientTFO: true, ServerListen: true, SessionTickets: true})
	const n = 5
	_, grew := r.run(t, 2, n)
	hs, _ := r.snapshot()
	var helloBytes uint64
	for i, h := range hs[2:] {
		if !h.Resumed || h.TFO != tfo.Accepted {
			t.Errorf("connection %d: resumed %v, outcome %s; want a resumed session and accepted", i, h.Resumed, h.TFO)
		}
		helloBytes += uint64(h.HelloBytes)
	}
	if grew.synData != n || grew.synDataBytes != helloBytes {
		t.Errorf("link saw %d SYNs with %d payload bytes; want %d carrying the %d resumed ClientHello bytes", grew.synData, grew.synDataBytes, n, helloBytes)
	}
	t.Logf("resumed ClientHello: %d bytes", hs[len(hs)-1].HelloBytes)
}
