package e2e

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	be "encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fastrojan/fastrojan/internal/bench"
	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/netlab"
	"github.com/fastrojan/fastrojan/internal/tfo"
	"github.com/fastrojan/fastrojan/internal/tfo/pathstate"
	"github.com/fastrojan/fastrojan/internal/tlsconf"
	"github.com/fastrojan/fastrojan/internal/trojan"
)

// queueLab is the shipped server binary in a netlab path, with an origin web page behind it, and
// what an in-process client (the bench runner with the client's racing and path memory) needs to
// reach it from the lab's client host.
type queueLab struct {
	p      *netlab.Path
	dir    string
	cert   string
	key    string
	tls    *tls.Config
	origin string
}

const queuePassword = "tfo-queue"

func newQueueLab(t *testing.T, opts netlab.PathOptions) *queueLab {
	t.Helper()
	p := netlab.NewPath(t, opts)
	l := &queueLab{p: p, dir: t.TempDir()}
	l.cert, l.key = certFiles(t, l.dir)
	l.origin = netip.AddrPortFrom(p.OriginAddr.V4, 80).String()
	startLabOrigin(t, p, l.origin, func() (net.Listener, error) { return net.Listen("tcp", l.origin) })
	pem, err := os.ReadFile(l.cert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	l.tls = &tls.Config{RootCAs: pool, ServerName: "localhost",
		CurvePreferences: tlsconf.CurvePreferencesFor(config.Default(config.RunClient).SSL, true)}
	return l
}

// server starts the binary on 0.0.0.0:port (so that every lab host linked to the server reaches
// it) with the given tcp and fastrojan objects.
func (l *queueLab) server(t *testing.T, port int, tcp, ext map[string]any) *proc {
	t.Helper()
	tcp["fast_open"] = true
	cfg := writeJSON(t, l.dir, fmt.Sprintf("server-%d.json", port), map[string]any{
		"run_type": "server", "local_addr": "0.0.0.0", "local_port": port,
		"remote_addr": "127.0.0.1", "remote_port": 81, "password": []string{queuePassword}, "log_level": 1,
		"ssl": map[string]any{"cert": l.cert, "key": l.key}, "tcp": tcp, "fastrojan": ext,
	})
	srv := startIn(t, l.p.Server, cfg)
	waitIn(t, l.p.Server, srv, netip.AddrPortFrom(l.p.ServerAddr.V4, uint16(port)).String())
	return srv
}

// bench returns bench options for n TFO connections to the server on port, c in flight.
func (l *queueLab) bench(port, n, c int) bench.Options {
	quiet := slog.New(slog.DiscardHandler)
	in := func(dial bench.DialFunc) bench.DialFunc {
		return func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
			err = l.p.Client.Do(func() error { conn, err = dial(ctx, network, addr); return err })
			return conn, err
		}
	}
	td := &tfo.Dialer{Dialer: net.Dialer{Timeout: 10 * time.Second}, Logger: quiet}
	var pd net.Dialer
	return bench.Options{
		Server: netip.AddrPortFrom(l.p.ServerAddr.V4, uint16(port)).String(), TLS: l.tls,
		Hash: trojan.HashPassword(queuePassword), URL: "http://" + l.origin + "/",
		DialTFO: in(td.DialContext), DialPlain: in(pd.DialContext),
		Paths: pathstate.New(pathstate.Options{Logger: quiet}),
		Do:    l.p.Client.Do,
		Counters: func() (client, server map[string]uint64, err error) {
			if client, err = l.p.Client.TcpExt(); err != nil {
				return nil, nil, err
			}
			server, err = l.p.Server.TcpExt()
			return client, server, err
		},
		N: n, Concurrency: c, Modes: []string{bench.ModeTFO}, Timeout: 15 * time.Second,
	}
}

// attacker adds a host linked to the server with the given one-way delay and faults.
func (l *queueLab) attacker(t *testing.T, name string, delay time.Duration, faults netlab.Faults) (*netlab.Host, *netlab.Link) {
	t.Helper()
	h, err := l.p.Lab.AddHost(name, netlab.HostOptions{})
	if err != nil {
		t.Fatal(err)
	}
	k, err := l.p.Lab.Connect(h, l.p.Server, netlab.LinkOptions{Delay: delay, Faults: faults})
	if err != nil {
		t.Fatal(err)
	}
	return h, k
}

func runBench(t *testing.T, o bench.Options) *bench.Report {
	t.Helper()
	rep, err := bench.Run(context.Background(), o)
	if err != nil {
		t.Fatalf("bench: %v", err)
	}
	var b strings.Builder
	_ = rep.WriteText(&b)
	t.Logf("\n%s", b.String())
	return rep
}

// DESIGN.md 3.10 and issue 14. RTT 100 ms, a server whose config says "fast_open_qlen": 20 (as
// trojan-gfw ships it), 1000 new connections with 100 in flight: the queue follows the listen
// backlog, so at least 99% of the SYN payloads are accepted by the kernels' own count, and the
// median first byte stays within 2.15 RTT. Meanwhile a second host floods the server with SYNs
// carrying data and forged cookies (they make no TFO child and take no slot: the valid clients'
// acceptance does not drop) and a third holds half-open TFO connections (its final ACKs are
// dropped by its link). The same run against a server with "exact_qlen": true reproduces the
// overflow the issue measured, so the test can fail; and 20 half-open connections are enough to
// make that server refuse all SYN data until its handshake timeout closes them.
func TestTFOQueueUnderLoad(t *testing.T) {
	const rtt = 100 * time.Millisecond
	l := newQueueLab(t, netlab.PathOptions{RTT: rtt})
	floor := l.server(t, 443, map[string]any{"fast_open_qlen": 20}, map[string]any{"metrics_listen": "127.0.0.1:9301"})
	exact := l.server(t, 444, map[string]any{"fast_open_qlen": 20}, map[string]any{"tfo": map[string]any{"exact_qlen": true}})
	// A fresh exact queue for the half-open holders: the run against 444 leaves requests the client
	// reset (abandoned race losers) counted in that queue for 60 s, as the kernel does by design.
	l.server(t, 445, map[string]any{"fast_open_qlen": 20}, map[string]any{"tfo": map[string]any{"exact_qlen": true}, "handshake_timeout": "3s"})

	// The queue in force, from the kernel, in the log and in the metrics.
	if out := floor.Output(); !strings.Contains(out, `msg="TCP Fast Open on the listener" qlen=4096 backlog=4096 fast_open_qlen=20 exact_qlen=false`) {
		t.Errorf("floor server's start log does not show the queue in force:\n%s", out)
	}
	if out := exact.Output(); !strings.Contains(out, `qlen=20 backlog=4096 fast_open_qlen=20 exact_qlen=true`) {
		t.Errorf("exact server's start log does not show the queue in force:\n%s", out)
	}
	if v := metric(scrapeIn(t, l.p.Server, "127.0.0.1:9301"), "fastrojan_tfo_queue_limit"); v != 4096 {
		t.Errorf("fastrojan_tfo_queue_limit = %v, want 4096", v)
	}

	// The clean run: acceptance by the kernels' counts and the median first byte. The median is a
	// timing claim on a shared 2-core machine: a run blurred by other load is measured again (at
	// most twice), never judged by a looser bound.
	for try := 1; ; try++ {
		rep := runBench(t, l.bench(443, 1000, 100))
		med := float64(rep.Mode(bench.ModeTFO).TTFB.Median) / float64(rtt)
		if med <= 2.15 || try == 3 {
			checkAcceptance(t, "queue from the config's floor", rep, rtt, 0.99, 2.15)
			break
		}
		t.Logf("median %.2f RTT, over 2.15: the machine is loaded (measuring again)", med)
	}

	floodHost, _ := l.attacker(t, "flood", rtt/2, netlab.Faults{})
	holdHost, _ := l.attacker(t, "hold", rtt/2, netlab.Faults{DropNonSYN: true})
	floodTo := netip.AddrPortFrom(l.p.Lab.Links()[2].AddrB().V4, 443)
	holdTo := netip.AddrPortFrom(l.p.Lab.Links()[3].AddrB().V4, 443)

	// Half-open holders: 200 TFO connections whose handshakes never complete on the server.
	held := holdHalfOpen(t, holdHost, l.p.Server, holdTo, 200)
	t.Logf("half-open TFO connections held on the floor server: %d (server TcpExt Passive counts them)", held)

	// Forged-cookie flood during the run.
	ctx, stopFlood := context.WithCancel(context.Background())
	var sent atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); floodForgedCookies(ctx, t, floodHost, floodTo, 3000, &sent) }()
	before, _ := l.p.Server.TcpExt()
	rep := runBench(t, l.bench(443, 1000, 100))
	stopFlood()
	wg.Wait()
	after, _ := l.p.Server.TcpExt()
	fail := after["TCPFastOpenPassiveFail"] - before["TCPFastOpenPassiveFail"]
	t.Logf("forged-cookie SYNs sent during the run: %d; server TCPFastOpenPassiveFail +%d, SyncookiesSent +%d, ListenOverflows +%d",
		sent.Load(), fail, after["SyncookiesSent"]-before["SyncookiesSent"], after["ListenOverflows"]-before["ListenOverflows"])
	checkAcceptance(t, "floor queue, flood and 200 half-open holders", rep, rtt, 0.99, 100) // the median was judged above
	if sent.Load() < 1000 || fail < uint64(sent.Load())/2 {
		t.Errorf("flood: %d forged SYNs sent, server PassiveFail +%d: the flood did not reach the server", sent.Load(), fail)
	}

	// The exact queue of 20: the overflow of the table.
	rep = runBench(t, l.bench(444, 1000, 100))
	k := rep.Kernel
	over := k.Server["TCPFastOpenListenOverflow"]
	t.Logf("exact queue 20: client Active +%d ActiveFail +%d, server Passive +%d ListenOverflow +%d, median %.2f RTT",
		k.Client["TCPFastOpenActive"], k.Client["TCPFastOpenActiveFail"], k.Server["TCPFastOpenPassive"], over,
		float64(rep.Mode(bench.ModeTFO).TTFB.Median)/float64(rtt))
	if over < 100 || k.Client["TCPFastOpenActive"] > 900 {
		t.Errorf("exact queue of 20: ListenOverflow +%d, client Active +%d; want the overflow reproduced (issue: 592 of 1000 refused)",
			over, k.Client["TCPFastOpenActive"])
	}

	// 20 half-open connections fill the exact queue: every valid client's SYN data is refused.
	exactTo := netip.AddrPortFrom(l.p.Lab.Links()[3].AddrB().V4, 445)
	start := time.Now()
	held = holdHalfOpen(t, holdHost, l.p.Server, exactTo, 20)
	t.Logf("half-open TFO connections held on the exact server: %d", held)
	rep = runBench(t, l.bench(445, 5, 1))
	if n := rep.Mode(bench.ModeTFO).Outcomes[tfo.DataNotAccepted.String()]; n != 5 {
		t.Errorf("with 20 half-open connections in an exact queue of 20: %d of 5 refused, want all (outcomes %v, server %v)", n,
			rep.Mode(bench.ModeTFO).Outcomes, rep.Kernel.Server)
	}
	// The server gives up on those handshakes after handshake_timeout (3 s here) and resets them,
	// which frees their slots at once (a plain close would leave them to the kernel's SYN-ACK
	// retries, about two minutes).
	var back time.Duration
	for time.Since(start) < 8*time.Second {
		o := l.bench(445, 1, 1)
		o.Warmup = -1
		if rep, err := bench.Run(context.Background(), o); err == nil && rep.Mode(bench.ModeTFO).Outcomes[tfo.Accepted.String()] == 1 {
			back = time.Since(start)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("exact queue 20 held by 20 half-open connections: SYN data accepted again %v after they were opened (handshake_timeout 3s)", back.Round(100*time.Millisecond))
	if back < 2500*time.Millisecond || back > 5*time.Second {
		t.Errorf("SYN data accepted again after %v; want when the handshake timeout (3 s) resets the half-open connections", back)
	}
}

// checkAcceptance asserts the TFO acceptance by the kernels' counters and the median TTFB.
func checkAcceptance(t *testing.T, name string, rep *bench.Report, rtt time.Duration, minAccept, maxMedianRTT float64) {
	t.Helper()
	m := rep.Mode(bench.ModeTFO)
	k := rep.Kernel
	if m == nil || k == nil || k.Server == nil {
		t.Fatalf("%s: no TFO mode or kernel counters in the report", name)
	}
	n := float64(m.Attempts)
	active, passive, over := k.Client["TCPFastOpenActive"], k.Server["TCPFastOpenPassive"], k.Server["TCPFastOpenListenOverflow"]
	med := float64(m.TTFB.Median) / float64(rtt)
	t.Logf("%s: %d connections, client Active +%d (%.1f%%), server Passive +%d, ListenOverflow +%d; TTFB median %.2f p90 %.2f p99 %.2f RTT",
		name, m.Attempts, active, 100*float64(active)/n, passive, over, med, float64(m.TTFB.P90)/float64(rtt), float64(m.TTFB.P99)/float64(rtt))
	if m.Successes != m.Attempts {
		t.Errorf("%s: %d of %d connections failed: %v", name, m.Attempts-m.Successes, m.Attempts, m.Errors)
	}
	// The kernels count every SYN with data (a second attempt after a lost SYN too); the outcome of
	// each connection kept (TCP_INFO) says whether its own ClientHello rode in an accepted SYN.
	kept := m.Outcomes[tfo.Accepted.String()]
	if float64(active) < minAccept*n || float64(passive) < minAccept*n || float64(kept) < minAccept*n {
		t.Errorf("%s: SYN payloads accepted: client Active %d, server Passive %d, connections kept with accepted SYN data %d of %d; want ≥ %.0f%%",
			name, active, passive, kept, m.Attempts, 100*minAccept)
	}
	if float64(over) > (1-minAccept)*n {
		t.Errorf("%s: ListenOverflow +%d", name, over)
	}
	if med > maxMedianRTT {
		t.Errorf("%s: median TTFB %.2f RTT > %.2f", name, med, maxMedianRTT)
	}
}

// holdHalfOpen opens n TFO connections from h to addr whose SYN carries the start of a TLS record
// and whose final ACK the link drops: each is a TFO child in SYN_RECV on the server, holding a
// queue slot, until the server gives up on its handshake. It returns how many SYNs with data the
// server accepted (its TcpExt TCPFastOpenPassive growth). The client sockets are closed at the end
// of the test.
func holdHalfOpen(t *testing.T, h, server *netlab.Host, addr netip.AddrPort, n int) uint64 {
	t.Helper()
	srv := func() uint64 { m, _ := server.TcpExt(); return m["TCPFastOpenPassive"] }
	before := srv()
	d := &tfo.Dialer{Dialer: net.Dialer{Timeout: 5 * time.Second}, Logger: slog.New(slog.DiscardHandler)}
	// The first connection fetches the cookie (its SYN-ACK carries it; its ACK is dropped).
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	err := h.Do(func() error {
		c, err := d.DialContext(context.Background(), "tcp", addr.String())
		if err != nil {
			return err
		}
		conns = append(conns, c)
		return nil
	})
	if err != nil {
		t.Fatalf("hold: cookie connection: %v", err)
	}
	record := []byte{0x16, 0x03, 0x01, 0x01, 0x00, 0x01} // a TLS handshake record of 256 bytes, cut short
	for range n {
		err := h.Do(func() error {
			c, err := d.DialContext(context.Background(), "tcp", addr.String())
			if err != nil {
				return err
			}
			conns = append(conns, c)
			_, err = c.Write(record)
			return err
		})
		if err != nil {
			t.Fatalf("hold: %v", err)
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && srv()-before < uint64(n) {
		time.Sleep(20 * time.Millisecond)
	}
	return srv() - before
}

// floodForgedCookies sends, from h, SYNs carrying 200 bytes of data and a TFO option with a random
// (forged) cookie to addr, rate per second, until ctx ends. Sources are h's own address with random
// ports, so h's kernel resets the SYN-ACKs. Built with a raw socket (IP_HDRINCL).
func floodForgedCookies(ctx context.Context, t *testing.T, h *netlab.Host, addr netip.AddrPort, rate int, sent *atomic.Int64) {
	src := h.Addrs()[0].V4
	var fd int
	if err := h.Do(func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		return err
	}); err != nil {
		t.Errorf("flood: raw socket: %v", err)
		return
	}
	defer unix.Close(fd)
	to := &unix.SockaddrInet4{Addr: addr.Addr().As4()}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	pkt := make([]byte, 20+36+200)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for range rate / 100 {
			forgedSYN(pkt, src, addr)
			if err := unix.Sendto(fd, pkt, 0, to); err == nil {
				sent.Add(1)
			}
		}
	}
}

// forgedSYN fills pkt (20 + 36 + payload bytes) with an IPv4 SYN from src (random port) to dst
// with options MSS 1460 and TFO with a random 8-byte cookie, and a random payload.
func forgedSYN(pkt []byte, src netip.Addr, dst netip.AddrPort) {
	_, _ = rand.Read(pkt[20:])
	ip := pkt[:20]
	ip[0], ip[1] = 0x45, 0
	be.BigEndian.PutUint16(ip[2:], uint16(len(pkt)))
	be.BigEndian.PutUint16(ip[4:], 0)
	be.BigEndian.PutUint16(ip[6:], 0x4000)
	ip[8], ip[9] = 64, unix.IPPROTO_TCP
	ip[10], ip[11] = 0, 0
	s4, d4 := src.As4(), dst.Addr().As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	tcp := pkt[20:]
	be.BigEndian.PutUint16(tcp[0:], 1024+be.BigEndian.Uint16(tcp[0:])%60000) // random source port
	be.BigEndian.PutUint16(tcp[2:], dst.Port())
	be.BigEndian.PutUint32(tcp[8:], 0) // ack
	tcp[12] = 36 / 4 << 4              // data offset
	tcp[13] = 0x02                     // SYN
	be.BigEndian.PutUint16(tcp[14:], 64240)
	tcp[16], tcp[17], tcp[18], tcp[19] = 0, 0, 0, 0 // checksum, urgent
	opts := tcp[20:36]
	copy(opts, []byte{2, 4, 0x05, 0xb4, 34, 10}) // MSS 1460; TFO, 8-byte cookie (random, already there)
	opts[14], opts[15] = 1, 1                    // NOP NOP
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(be.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(s4[:])
	add(d4[:])
	sum += unix.IPPROTO_TCP + uint32(len(tcp))
	add(tcp)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	be.BigEndian.PutUint16(tcp[16:], ^uint16(sum))
}
