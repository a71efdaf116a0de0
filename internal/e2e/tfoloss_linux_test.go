package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"github.com/fastrojan/fastrojan/internal/netlab"
)

// lossyPeer is one implementation (server and SOCKS5 client) running in a lab path.
type lossyPeer struct {
	name  string
	socks string // SOCKS5 address on the client host
}

// startProcIn runs bin with args in host h until the test ends.
func startProcIn(t testing.TB, h *netlab.Host, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: h.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s in %s: %v", bin, h.Name(), err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.stop(10 * time.Second)
		if t.Failed() {
			t.Logf("%s in %s output:\n%s", bin, h.Name(), p.Output())
		}
	})
	return p
}

// lossyLab starts, in one path, our server and client (SOCKS5 127.0.0.1:1080, metrics on
// 127.0.0.1:9401 in the client host) and, when gfw is set, trojan-gfw's server and client (SOCKS5
// 127.0.0.1:1081), all with TCP Fast Open, and an origin web page behind the server.
func lossyLab(t *testing.T, opts netlab.PathOptions, gfw bool) (*netlab.Path, string, []lossyPeer) {
	t.Helper()
	p := netlab.NewPath(t, opts)
	dir := t.TempDir()
	cert, key := certFiles(t, dir)
	origin := netip.AddrPortFrom(p.OriginAddr.V4, 80).String()
	startLabOrigin(t, p, origin, func() (net.Listener, error) { return net.Listen("tcp", origin) })
	server := p.ServerAddr.V4.String()
	scfg, ccfg := labTrojanConfigs(p, cert, key, "lossy")
	ours := ccfg(1080, 443)
	// One connection per fetch, as trojan-gfw opens: each fetch is one TFO attempt (spares would
	// carry most fetches without a new connection; the warm path has tests of its own).
	ours["fastrojan"] = map[string]any{"metrics_listen": "127.0.0.1:9401", "pool": map[string]any{"spares": 0}}
	srv := startIn(t, p.Server, writeJSON(t, dir, "server.json", scfg(443)))
	cli := startIn(t, p.Client, writeJSON(t, dir, "client.json", ours))
	waitIn(t, p.Server, srv, server+":443")
	waitIn(t, p.Client, cli, "127.0.0.1:1080")
	peers := []lossyPeer{{name: "fastrojan", socks: "127.0.0.1:1080"}}
	if gfw {
		bin := trojanGFW(t)
		gsrv := startProcIn(t, p.Server, bin, "-c", writeJSON(t, dir, "gfw-server.json", scfg(8443)))
		gcli := startProcIn(t, p.Client, bin, "-c", writeJSON(t, dir, "gfw-client.json", ccfg(1081, 8443)))
		waitIn(t, p.Server, gsrv, server+":8443")
		waitIn(t, p.Client, gcli, "127.0.0.1:1081")
		peers = append(peers, lossyPeer{name: "trojan-gfw", socks: "127.0.0.1:1081"})
	}
	return p, origin, peers
}

// labTrojanConfigs returns trojan-gfw-format configs for a lab path, read by fastrojan and trojan-gfw
// alike, TCP Fast Open on: a server on port of p's server address relaying to 127.0.0.1:81, and a
// client with SOCKS5 on 127.0.0.1:local (client host) to that server port, verifying cert's name.
func labTrojanConfigs(p *netlab.Path, cert, key, pw string) (server func(port int) map[string]any, client func(local, port int) map[string]any) {
	addr := p.ServerAddr.V4.String()
	server = func(port int) map[string]any {
		return map[string]any{"run_type": "server", "local_addr": addr, "local_port": port,
			"remote_addr": "127.0.0.1", "remote_port": 81, "password": []string{pw}, "log_level": 1,
			"ssl": map[string]any{"cert": cert, "key": key}, "tcp": map[string]any{"fast_open": true}}
	}
	client = func(local, port int) map[string]any {
		return map[string]any{"run_type": "client", "local_addr": "127.0.0.1", "local_port": local,
			"remote_addr": addr, "remote_port": port, "password": []string{pw}, "log_level": 1,
			"ssl": map[string]any{"cert": cert, "sni": "localhost", "verify": true, "verify_hostname": true},
			"tcp": map[string]any{"fast_open": true}}
	}
	return server, client
}

// fetchResult is one proxied fetch: its time to first byte and what the kernels and the link
// counted while it ran (the fetches are sequential, so the growth is this fetch's).
type fetchResult struct {
	ttfb            time.Duration
	err             error
	active, passive uint64 // client TCPFastOpenActive, server TCPFastOpenPassive growth
	lost            uint64 // packets the link's random loss dropped, both directions
	packets         fetchPackets
}

// fetchVia makes one new connection through the SOCKS5 proxy on the client host to origin and
// returns the time from the SOCKS5 dial to the first byte of the HTTP response.
func fetchVia(p *netlab.Path, socks, origin string) (time.Duration, error) {
	d, err := proxy.SOCKS5("tcp", socks, nil, hostDialer{p.Client})
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	start := time.Now()
	c, err := d.(proxy.ContextDialer).DialContext(ctx, "tcp", origin)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", origin); err != nil {
		return 0, err
	}
	br := bufio.NewReader(c)
	if _, err := br.Peek(1); err != nil {
		return 0, fmt.Errorf("first byte: %w", err)
	}
	ttfb := time.Since(start)
	line, _ := br.ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 200") {
		return ttfb, fmt.Errorf("response %q", line)
	}
	return ttfb, nil
}

func measuredFetch(t testing.TB, p *netlab.Path, socks, origin string) fetchResult {
	t.Helper()
	lost := func() uint64 { return p.Link.AtoB().Stats().Lost + p.Link.BtoA().Stats().Lost }
	c0, _ := p.Client.TcpExt()
	s0, _ := p.Server.TcpExt()
	l0 := lost()
	var r fetchResult
	r.ttfb, r.err = fetchVia(p, socks, origin)
	c1, _ := p.Client.TcpExt()
	s1, _ := p.Server.TcpExt()
	r.active, r.passive = c1["TCPFastOpenActive"]-c0["TCPFastOpenActive"], s1["TCPFastOpenPassive"]-s0["TCPFastOpenPassive"]
	r.lost = lost() - l0
	return r
}

// fetchInTurn makes warmup fetches and then n measured ones through each of peers, one of each in
// turn (so that a slow moment of the machine falls on all alike), each followed by gap, and returns
// the measured fetches of each peer. A failed fetch fails tb.
func fetchInTurn(tb testing.TB, p *netlab.Path, peers []lossyPeer, origin string, warmup, n int, gap time.Duration) [][]fetchResult {
	tb.Helper()
	out := make([][]fetchResult, len(peers))
	for round := range warmup + n {
		for k, pr := range peers {
			r := measuredFetch(tb, p, pr.socks, origin)
			if r.err != nil {
				tb.Fatalf("fetch %d via %s: %v", round, pr.name, r.err)
			}
			if round >= warmup { // TLS sessions, TFO cookies, a pool's first spares
				out[k] = append(out[k], r)
			}
			time.Sleep(gap)
		}
	}
	return out
}

// ttfbsOf returns the fetches' times to first byte, and in how many of them the server accepted
// data in a SYN (the server namespace's TCPFastOpenPassive grew).
func ttfbsOf(rs []fetchResult) (ttfb []time.Duration, synData int) {
	for _, r := range rs {
		ttfb = append(ttfb, r.ttfb)
		if r.passive > 0 {
			synData++
		}
	}
	return ttfb, synData
}

// ttfbPercentiles returns median, p90, p99 (nearest rank) in RTTs.
func ttfbPercentiles(ds []time.Duration, rtt time.Duration) (med, p90, p99 float64) {
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(p float64) float64 {
		k := int(float64(len(s))*p+0.999999) - 1
		return float64(s[min(max(k, 0), len(s)-1)]) / float64(rtt)
	}
	return at(0.5), at(0.9), at(0.99)
}

// Issue 14, DESIGN.md 3.12: RTT 50 ms, 2% random loss each way, 200 new proxied connections per
// implementation, ours and trojan-gfw's interleaved on the same link. Ours keeps TFO: at least 95%
// of the connections kept had their SYN data accepted (the client's TCP_INFO outcome; the server
// kernel's TCPFastOpenPassive per fetch agrees), median first byte within 2.15 RTT, the path state
// never leaves working; and its p90 and p99 are no worse than trojan-gfw's, whose lost SYNs wait
// for the kernel's one-second retransmission where ours send a second SYN with data.
//
// The loss uses common random numbers (commonLoss): the n-th packet of the i-th fetch's own
// connections meets the same draw whichever implementation sends it. Two independent samples of 200
// would compare their p90s by chance, since the p90 sits where about 10% of the fetches meet a
// loss that costs a round trip; the same draws compare the implementations. Fetches whose first
// bytes differ by more than half an RTT are logged with the packets each lost.
// FASTROJAN_LOSS (e.g. 0.01, 0.05), FASTROJAN_LOSS_N and FASTROJAN_LOSS_SEED measure other points.
func TestTFOLossyPathAgainstTrojanGFW(t *testing.T) {
	const rtt = 50 * time.Millisecond
	loss, n := 0.02, 200
	if v := os.Getenv("FASTROJAN_LOSS"); v != "" {
		fmt.Sscan(v, &loss)
	}
	if v := os.Getenv("FASTROJAN_LOSS_N"); v != "" {
		fmt.Sscan(v, &n)
	}
	seed := uint64(14)
	if v := os.Getenv("FASTROJAN_LOSS_SEED"); v != "" {
		fmt.Sscan(v, &seed)
	}
	p, origin, peers := lossyLab(t, netlab.PathOptions{RTT: rtt}, true)
	// Warm-up without loss: each client fetches its cookie.
	for _, peer := range peers {
		for range 2 {
			if _, err := fetchVia(p, peer.socks, origin); err != nil {
				t.Fatalf("%s warm-up: %v", peer.name, err)
			}
		}
	}
	cl := newCommonLoss(loss, seed)
	for d, dir := range []*netlab.Direction{p.Link.AtoB(), p.Link.BtoA()} {
		dir.SetDropFunc(func(pkt []byte) bool { return cl.drop(d, pkt) })
	}

	const keptAccepted = `fastrojan_tfo_outcomes_total{leg="client",outcome="accepted"}`
	kept0 := metric(scrapeIn(t, p.Client, "127.0.0.1:9401"), keptAccepted)
	synData0 := p.Link.AtoB().Stats().SYNData
	s0, _ := p.Server.TcpExt()
	results := make([][]fetchResult, len(peers))
	for f := range n {
		for i, peer := range peers {
			cl.begin(f)
			r := measuredFetch(t, p, peer.socks, origin)
			r.packets = cl.end()
			results[i] = append(results[i], r)
		}
	}
	p.Link.AtoB().SetDropFunc(nil)
	p.Link.BtoA().SetDropFunc(nil)
	s1, _ := p.Server.TcpExt()
	t.Logf("all SYNs with data on the link (both implementations, fastrojan's second attempts included): %d, accepted by the server %d",
		p.Link.AtoB().Stats().SYNData-synData0, s1["TCPFastOpenPassive"]-s0["TCPFastOpenPassive"])

	for f := range n {
		ours, gfw := results[0][f], results[1][f]
		if d := ours.ttfb - gfw.ttfb; d > rtt/2 || d < -rtt/2 {
			t.Logf("fetch %3d: fastrojan %5.2f RTT (lost %s), trojan-gfw %5.2f RTT (lost %s)", f,
				float64(ours.ttfb)/float64(rtt), ours.packets.lostList(), float64(gfw.ttfb)/float64(rtt), gfw.packets.lostList())
		}
	}
	type summary struct{ med, p90, p99, passive, active float64 }
	sums := make([]summary, len(peers))
	for i, peer := range peers {
		var ttfb []time.Duration
		var active, passive, failed, up, down, lost int
		for _, r := range results[i] {
			up, down, lost = up+r.packets.up, down+r.packets.down, lost+len(r.packets.lost)
			if r.err != nil {
				failed++
				continue
			}
			ttfb = append(ttfb, r.ttfb)
			active += int(min(r.active, 1))
			passive += int(min(r.passive, 1))
		}
		if failed > 0 {
			t.Errorf("%s: %d of %d fetches failed", peer.name, failed, n)
		}
		med, p90, p99 := ttfbPercentiles(ttfb, rtt)
		sums[i] = summary{med, p90, p99, float64(passive) / float64(n), float64(active) / float64(n)}
		t.Logf("%-10s loss %.0f%% each way, RTT %v, %d connections: with its ClientHello accepted in a SYN by the server %d (%.1f%%), acknowledged to the client %d; TTFB median %.2f p90 %.2f p99 %.2f RTT; packets per fetch %.2f up, %.2f down, %d lost",
			peer.name, 100*loss, rtt, n, passive, 100*sums[i].passive, active, med, p90, p99, float64(up)/float64(n), float64(down)/float64(n), lost)
	}
	ours, gfw := sums[0], sums[1]
	// Per connection kept (the client's own TCP_INFO outcome, from its metrics): its ClientHello rode
	// in a SYN the server accepted.
	kept := metric(scrapeIn(t, p.Client, "127.0.0.1:9401"), keptAccepted) - kept0
	t.Logf("fastrojan connections kept with their SYN data accepted (client outcome accepted): %.0f of %d = %.1f%%", kept, n, 100*kept/float64(n))
	if loss <= 0.02 {
		if ours.passive < 0.95 || kept < 0.95*float64(n) {
			t.Errorf("fastrojan: SYN payloads accepted in %.1f%% of fetches, %.0f of %d connections kept; want ≥ 95%%", 100*ours.passive, kept, n)
		}
		if ours.med > 2.15 {
			t.Errorf("fastrojan: median TTFB %.2f RTT, want ≤ 2.15", ours.med)
		}
	}
	if ours.p99 > gfw.p99 {
		t.Errorf("fastrojan p99 %.2f RTT, trojan-gfw p99 %.2f: want ours no worse", ours.p99, gfw.p99)
	}
	if ours.p90 > gfw.p90 {
		t.Errorf("fastrojan p90 %.2f RTT, trojan-gfw p90 %.2f: want ours no worse", ours.p90, gfw.p90)
	}
	body := scrapeIn(t, p.Client, "127.0.0.1:9401")
	server := netip.AddrPortFrom(p.ServerAddr.V4, 443).String()
	for _, st := range []string{"suspect", "disabled", "probing"} {
		if v := metric(body, `fastrojan_tfo_path_transitions_total{server="`+server+`",state="`+st+`"}`); v > 0 {
			t.Errorf("path state left working: %v transitions to %s", v, st)
		}
	}
	if v := metric(body, `fastrojan_tfo_path_state{server="`+server+`",state="working"}`); v != 1 {
		t.Errorf("path state working = %v, want 1", v)
	}
	t.Logf("races started %v, won by plain %v", metric(body, `fastrojan_tfo_races_started_total{server="`+server+`"}`),
		metric(body, `fastrojan_tfo_races_won_total{server="`+server+`",winner="plain"}`))
}

// Issue 14: a path that drops every SYN with data, with 2% random loss on top, at RTT 50 ms: the
// client declares the blackhole within its first 3 connections, and no fetch waits for the
// kernel's one-second SYN retransmit: none over 5 RTT, except a fetch the random loss itself hit
// (the link counts its losses per fetch), which is reported.
func TestTFODropSYNDataWithLoss(t *testing.T) {
	const rtt = 50 * time.Millisecond
	p, origin, peers := lossyLab(t, netlab.PathOptions{RTT: rtt, Loss: 0.02, Seed: 3, Faults: netlab.Faults{DropSYNData: true}}, false)
	server := netip.AddrPortFrom(p.ServerAddr.V4, 443).String()
	detected := -1
	hit := 0
	const n = 12
	for i := range n {
		r := measuredFetch(t, p, peers[0].socks, origin)
		if r.err != nil {
			t.Fatalf("fetch %d: %v", i, r.err)
		}
		state := ""
		body := scrapeIn(t, p.Client, "127.0.0.1:9401")
		if metric(body, `fastrojan_tfo_path_state{server="`+server+`",state="disabled"}`) == 1 && detected < 0 {
			detected = i
			state = " (disabled from here)"
		}
		t.Logf("fetch %d: TTFB %.2f RTT, random loss hit %d packet(s)%s", i, float64(r.ttfb)/float64(rtt), r.lost, state)
		if r.ttfb > 5*rtt {
			if r.lost > 0 {
				hit++
				continue
			}
			t.Errorf("fetch %d: TTFB %.2f RTT > 5 with no random loss during it: it waited for a SYN retransmit", i, float64(r.ttfb)/float64(rtt))
		}
	}
	if detected < 0 || detected > 2 {
		t.Errorf("blackhole detected after fetch %d (0-based), want within the first 3", detected)
	}
	t.Logf("detected after fetch %d; %d fetch(es) over 5 RTT, each hit by the random loss", detected, hit)
}
