package e2e

import (
	"context"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/netlab"
)

// Issue 17: new connections through client and server processes, fastrojan and its peers side by
// side in one run, on loopback (zero delay: what is measured is the work each connection costs).
//
//	go test -run '^$' -bench NewConnPeers -benchtime 1x ./internal/e2e
//
// Two setups, each in a network namespace of its own (netlab, root): configSetups, "gfw-config"
// (without TCP Fast Open, as trojan-gfw ships) and "tfo" (with it, as fastrojan ships).
//
// For each implementation: the median and p90 time from the application's connect to the first
// byte of the origin's answer over 300 sequential connections, taken in turn with the other
// implementations' (one fetch each, round after round, so a slow stretch of the machine falls on
// all of them alike), then 3 s of connections from 8 workers at once: connections per second, and
// connections per second of server CPU (what one server core accepts: TLS handshake, Trojan
// request, target dial). fastrojan is measured twice: as configured by default (spare connections
// ready: the first byte needs no handshake) and with "spares": 0 (every connection does its TLS
// handshake, as the peers' do).

// requestOrigin answers each connection's first bytes with a short HTTP response and closes.
func requestOrigin(tb testing.TB) string {
	tb.Helper()
	const answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
	return serveTCP(tb, "tcp", "127.0.0.1:0", func(_ context.Context, c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 512)); err == nil {
			_, _ = c.Write([]byte(answer))
		}
	})
}

// fetchOnce opens a tunnel to origin, sends a request and reads the whole answer; ttfb is from the
// start of the connect to the answer's first byte.
func fetchOnce(socks, origin string) (ttfb time.Duration, err error) {
	start := time.Now()
	c, err := socksDialErr(socks, origin)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: origin\r\n\r\n")); err != nil {
		return 0, err
	}
	first := make([]byte, 1)
	if _, err := io.ReadFull(c, first); err != nil {
		return 0, err
	}
	ttfb = time.Since(start)
	_, err = io.Copy(io.Discard, c)
	return ttfb, err
}

func BenchmarkNewConnPeers(b *testing.B) {
	runSetups(b, "peers", func(b *testing.B, host *netlab.Host, setup configSetup) {
		var origin string
		var peers []bulkPeer
		if err := host.Do(func() error {
			origin = requestOrigin(b)
			peers = startConnPeers(b, setup.fastOpen)
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		newConnPeers(b, host.Do, host.TcpExt, setup.fastOpen, origin, peers)
	})
}

// configSetup is how a benchmark's processes are configured and the host they run on: the two ways
// users run them. "gfw-config": the kernel's default net.ipv4.tcp_fastopen (1, clients only) and
// every config without tcp.fast_open (trojan-gfw's default: a trojan-gfw config.json run unchanged).
// "tfo": the sysctl at 3 and tcp.fast_open on in every config, ours and the peers' (fastrojan's own
// configs on a host set up as README's TCP Fast Open section says): the ClientHello rides in the SYN.
type configSetup struct {
	name     string
	sysctl   int  // the namespace's net.ipv4.tcp_fastopen
	fastOpen bool // tcp.fast_open in every config, ours and the peers'
}

var configSetups = []configSetup{{"gfw-config", 1, false}, {"tfo", 3, true}}

// runSetups runs bench once per configSetup, each on a host (network namespace) of its own.
func runSetups(b *testing.B, hostName string, bench func(b *testing.B, host *netlab.Host, setup configSetup)) {
	for _, setup := range configSetups {
		b.Run(setup.name, func(b *testing.B) {
			host, err := netlab.New(b).AddHost(hostName, netlab.HostOptions{TCPFastOpen: setup.sysctl})
			if err != nil {
				b.Fatal(err)
			}
			bench(b, host, setup)
		})
	}
}

// startConnPeers starts fastrojan (as configured by default, and with "spares": 0) and the peers,
// with tcp.fast_open as fastOpen says. It runs in the benchmark's namespace.
func startConnPeers(b *testing.B, fastOpen bool) []bulkPeer {
	peers := startBulkPeersWith(b, fastOpen)
	cold := startPairWith(b, func(c map[string]any) { withFastOpen(c, fastOpen) }, func(c map[string]any) {
		withFastOpen(c, fastOpen)
		c["fastrojan"] = map[string]any{"pool": map[string]any{"spares": 0}}
	})
	return append(peers[:1], append([]bulkPeer{{"fastrojan-spares-0", cold.socks, cold.client, cold.server}}, peers[1:]...)...)
}

// newConnPeers measures peers' first bytes with the fetches interleaved (one per peer in turn, so
// a slow stretch of the machine falls on all alike), then each one's connection rate. in runs a
// function inside the namespace where the peers listen (netlab's Host.Do); counters reads its
// TcpExt counters: how many SYNs with data the servers accepted during each one's fetches
// (TCPFastOpenPassive) is logged, and checked for the implementations that open a connection per
// tunnel: every one with TFO (fastOpen), none without. fastrojan's spares open between fetches and
// are counted where they happen to fall, so its default row is logged only.
func newConnPeers(b *testing.B, in func(func() error) error, counters func() (map[string]uint64, error), fastOpen bool, origin string, peers []bulkPeer) {
	fetch := func(peer bulkPeer) (d time.Duration, err error) {
		if err := in(func() error { d, err = fetchOnce(peer.socks, origin); return nil }); err != nil {
			return 0, err
		}
		return d, err
	}
	passive := func() uint64 {
		m, err := counters()
		if err != nil {
			b.Fatal(err)
		}
		return m["TCPFastOpenPassive"]
	}
	ttfbs := make([][]time.Duration, len(peers))
	synData := make([]uint64, len(peers))
	for round := range 320 {
		for i, peer := range peers {
			before := passive()
			d, err := fetch(peer)
			if err != nil {
				b.Fatalf("%s: %v", peer.name, err)
			}
			if round >= 20 { // warm-up: TLS sessions, cookies, spares
				ttfbs[i] = append(ttfbs[i], d)
				synData[i] += passive() - before
			}
			time.Sleep(2 * time.Millisecond) // sequential, not back to back: spares refill
		}
	}
	for i, peer := range peers {
		b.Logf("%s: the server accepted %d SYNs with data during its %d measured tunnels", peer.name, synData[i], len(ttfbs[i]))
		if peer.name == "fastrojan" {
			continue
		}
		if n := uint64(len(ttfbs[i])); fastOpen && synData[i] < n*95/100 || !fastOpen && synData[i] != 0 {
			b.Errorf("%s: %d of %d tunnels had their SYN data accepted, want %s: the setup does not run as named",
				peer.name, synData[i], n, map[bool]string{true: "every one", false: "none"}[fastOpen])
		}
	}
	for i, peer := range peers {
		b.Run(peer.name, func(b *testing.B) {
			for range b.N {
				slices.Sort(ttfbs[i])
				n := len(ttfbs[i])
				b.ReportMetric(float64(ttfbs[i][n/2].Microseconds())/1000, "ttfb-p50-ms")
				b.ReportMetric(float64(ttfbs[i][n*9/10].Microseconds())/1000, "ttfb-p90-ms")

				conns, failed, wall, scpu, ccpu := connLoad(b, in, peer, origin, 8, 3*time.Second)
				b.ReportMetric(float64(conns)/wall.Seconds(), "conn/s")
				b.ReportMetric(float64(conns)/scpu, "conn/server-cpu-s")
				b.ReportMetric(float64(conns)/ccpu, "conn/client-cpu-s")
				b.ReportMetric(float64(failed), "failed")
				b.ReportMetric(0, "ns/op")
			}
		})
	}
}

// connLoad runs workers that fetch back to back for d and returns the connections completed and
// failed, and the CPU seconds server and client processes spent meanwhile.
func connLoad(b *testing.B, in func(func() error) error, peer bulkPeer, origin string, workers int, d time.Duration) (conns, failed int64, wall time.Duration, scpu, ccpu float64) {
	var ok, bad atomic.Int64
	s0, c0 := cpuSeconds(b, peer.server.cmd.Process.Pid), cpuSeconds(b, peer.client.cmd.Process.Pid)
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := in(func() error { // a worker keeps its thread in the namespace
				for time.Since(start) < d {
					if _, err := fetchOnce(peer.socks, origin); err != nil {
						bad.Add(1)
						continue
					}
					ok.Add(1)
				}
				return nil
			})
			if err != nil {
				bad.Add(1)
			}
		}()
	}
	wg.Wait()
	wall = time.Since(start)
	scpu = cpuSeconds(b, peer.server.cmd.Process.Pid) - s0
	ccpu = cpuSeconds(b, peer.client.cmd.Process.Pid) - c0
	return ok.Load(), bad.Load(), wall, scpu, ccpu
}

// BenchmarkNewConnInProcess is one new tunnel (SOCKS5, TLS handshake, Trojan request, target dial,
// an answer) through a server and a client in this process, so that Go's profilers see both:
//
//	go test -run '^$' -bench NewConnInProcess -cpuprofile cpu.out -memprofile mem.out ./internal/e2e
func BenchmarkNewConnInProcess(b *testing.B) {
	socks := inProcessProxy(b)
	origin := requestOrigin(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fetchOnce(socks, origin); err != nil {
			b.Fatal(err)
		}
	}
}
