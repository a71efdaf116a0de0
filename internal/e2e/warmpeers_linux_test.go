package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/netlab"
)

// BenchmarkWarmPeers compares new streams on an emulated WAN (netlab, root) at 20 ms and 100 ms
// RTT, one fetch per implementation in turn so that a slow stretch of the machine falls on all
// alike, each fetch 20 ms after the previous one (a browser's connections during a page):
//
//	go test -run '^$' -bench WarmPeers -benchtime 1x ./internal/e2e
//
// The implementations, every one with TCP Fast Open on (fastrojan's own configs):
//   - fastrojan: the default config, whose streams ride spare connections (the pool);
//   - fastrojan-mux: trojan-go's mux ("mux": {"enabled": true});
//   - sing-box-mux: sing-box's Trojan with its multiplex as a user turns it on (its default
//     protocol, h2mux), and sing-box-smux with smux, the module trojan-go's mux uses, when a
//     sing-box binary is on PATH or named by FASTROJAN_SINGBOX (trojan-go itself cannot be
//     installed here);
//   - trojan-gfw: a new connection per stream, the cold reference (when Debian's trojan is on PATH).
//     Its server must have accepted data in the SYN of at least 95% of its fetches (the server
//     namespace's TCPFastOpenPassive), or the benchmark fails: the reference is a TFO path.
//
// It reports each one's median and 99th percentile time to first byte in RTTs, measured as an
// application sees it: from its SOCKS5 dial (greeting, CONNECT, then the HTTP request) to the first
// byte of the answer. The origin is a plain web server behind the server (no TFO, as most are).
func BenchmarkWarmPeers(b *testing.B) {
	for _, rtt := range []time.Duration{20 * time.Millisecond, 100 * time.Millisecond} {
		b.Run(rtt.String(), func(b *testing.B) {
			p := netlab.NewPath(b, netlab.PathOptions{RTT: rtt, OriginVeth: true})
			origin := netip.AddrPortFrom(p.OriginAddr.V4, 80).String()
			startLabOrigin(b, p, origin, func() (net.Listener, error) { return net.Listen("tcp", origin) })
			peers := startWarmPeers(b, p)
			const rounds = 40
			results := fetchInTurn(b, p, peers, origin, 3, rounds, 20*time.Millisecond)
			for k, pr := range peers {
				ttfb, synData := ttfbsOf(results[k])
				// Streams that ride a spare or a mux session send no SYN of their own: their count
				// is spares that happened to open meanwhile (our pool's replacement spares arrive
				// during the next peer's fetch at 100 ms), logged only. Such a spare can only add
				// to trojan-gfw's count, never hide a SYN it had accepted.
				b.Logf("%s: the server accepted data in a SYN during %d of its %d fetches", pr.name, synData, rounds)
				if pr.name == "trojan-gfw" && synData < rounds*95/100 {
					b.Errorf("trojan-gfw: SYN data accepted in %d of %d fetches, want ≥ 95%%: the cold reference did not run with TFO", synData, rounds)
				}
				b.Run(pr.name, func(b *testing.B) {
					med, _, p99 := ttfbPercentiles(ttfb, rtt)
					for range b.N {
						b.ReportMetric(med, "ttfb-p50-RTT")
						b.ReportMetric(p99, "ttfb-p99-RTT")
						b.ReportMetric(0, "ns/op")
					}
				})
			}
		})
	}
}

// startWarmPeers starts BenchmarkWarmPeers' implementations in p, servers in its server host
// (origin: the lab origin on port 80 of p's origin host) and SOCKS5 clients in its client host.
func startWarmPeers(b *testing.B, p *netlab.Path) []lossyPeer {
	dir := b.TempDir()
	cert, key := certFiles(b, dir)
	server := p.ServerAddr.V4.String()
	const pw = "warm-peers"
	trojanServer, trojanClient := labTrojanConfigs(p, cert, key, pw)
	srv := startIn(b, p.Server, writeJSON(b, dir, "server.json", trojanServer(443)))
	waitIn(b, p.Server, srv, server+":443")
	muxCfg := trojanClient(1081, 443)
	muxCfg["mux"] = map[string]any{"enabled": true}
	pool := startIn(b, p.Client, writeJSON(b, dir, "client.json", trojanClient(1080, 443)))
	mux := startIn(b, p.Client, writeJSON(b, dir, "client-mux.json", muxCfg))
	waitIn(b, p.Client, pool, "127.0.0.1:1080")
	waitIn(b, p.Client, mux, "127.0.0.1:1081")
	peers := []lossyPeer{{"fastrojan", "127.0.0.1:1080"}, {"fastrojan-mux", "127.0.0.1:1081"}}

	if bin := singBoxBin(); bin != "" {
		for i, sb := range []struct{ name, protocol string }{{"sing-box-mux", "default"}, {"sing-box-smux", "smux"}} {
			port, socks := 8444+i, 1082+10*i
			scfg, ccfg := singBoxConfigs(singBoxSetup{listen: server, port: port, socks: socks, cert: cert, key: key,
				password: pw, fastOpen: true, multiplex: sb.protocol})
			s := startProcIn(b, p.Server, bin, "run", "-c", writeJSON(b, dir, sb.name+"-server.json", scfg))
			waitIn(b, p.Server, s, fmt.Sprintf("%s:%d", server, port))
			c := startProcIn(b, p.Client, bin, "run", "-c", writeJSON(b, dir, sb.name+"-client.json", ccfg))
			waitIn(b, p.Client, c, fmt.Sprintf("127.0.0.1:%d", socks))
			peers = append(peers, lossyPeer{sb.name, fmt.Sprintf("127.0.0.1:%d", socks)})
		}
	} else {
		b.Logf("no sing-box on PATH (or FASTROJAN_SINGBOX): sing-box's multiplex not measured")
	}

	if bin, err := exec.LookPath("trojan"); err == nil {
		s := startProcIn(b, p.Server, bin, "-c", writeJSON(b, dir, "gfw-server.json", trojanServer(8443)))
		waitIn(b, p.Server, s, server+":8443")
		c := startProcIn(b, p.Client, bin, "-c", writeJSON(b, dir, "gfw-client.json", trojanClient(1083, 8443)))
		waitIn(b, p.Client, c, "127.0.0.1:1083")
		peers = append(peers, lossyPeer{"trojan-gfw", "127.0.0.1:1083"})
	} else {
		b.Logf("no trojan-gfw on PATH (Debian: apt-get install trojan): the cold reference not measured")
	}
	return peers
}
