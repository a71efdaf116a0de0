package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"github.com/fastrojan/fastrojan/internal/trojan"

	"github.com/fastrojan/fastrojan/internal/netlab"
	"github.com/fastrojan/fastrojan/internal/tfo"
)

// warmRig is the shipped binary as server and client on an emulated WAN, with an origin web page
// behind the server that accepts TFO: the setup of the warm-path proofs.
type warmRig struct {
	p          *netlab.Path
	rtt        time.Duration
	url        string
	socks      proxy.ContextDialer
	clientMet  string // client's metrics address inside the client host
	cli        *proc
	serverAddr string
}

// newWarmRig starts the binaries with TCP Fast Open on and otherwise the default config, plus
// clientExt in the client's "fastrojan" object (nil: defaults; a "mux" key goes to the top level). startServer, if set, starts another
// server in the server host instead of ours and returns its address.
func newWarmRig(t *testing.T, rtt time.Duration, clientExt map[string]any, startServer func(p *netlab.Path, cert, key string) string) *warmRig {
	t.Helper()
	// The origin sits on a veth pair behind the server: a zero-delay hop through the lab's userspace
	// forwarder would add its two wake-ups to every packet of the server's dial and the answer.
	p := netlab.NewPath(t, netlab.PathOptions{RTT: rtt, OriginVeth: true})
	dir := t.TempDir()
	cert, key := certFiles(t, dir)
	originAddr := netip.AddrPortFrom(p.OriginAddr.V4, 80).String()
	startLabOrigin(t, p, originAddr, func() (net.Listener, error) {
		return tfo.Listen(context.Background(), "tcp", originAddr, 64, nil)
	})
	srvAddr := netip.AddrPortFrom(p.ServerAddr.V4, 443).String()
	if startServer == nil { // our own server
		scfg := writeJSON(t, dir, "server.json", map[string]any{
			"run_type": "server", "local_addr": p.ServerAddr.V4.String(), "local_port": 443,
			"remote_addr": "127.0.0.1", "remote_port": 81, "password": []string{"warm-e2e"},
			"ssl": map[string]any{"cert": cert, "key": key},
			"tcp": map[string]any{"fast_open": true},
		})
		srv := startIn(t, p.Server, scfg)
		waitIn(t, p.Server, srv, srvAddr)
	} else {
		srvAddr = startServer(p, cert, key)
	}
	ext := map[string]any{"metrics_listen": "127.0.0.1:9101"}
	for k, v := range clientExt {
		ext[k] = v
	}
	host, port, _ := net.SplitHostPort(srvAddr)
	var portN int
	fmt.Sscan(port, &portN)
	cc := map[string]any{
		"run_type": "client", "local_addr": "127.0.0.1", "local_port": 1080,
		"remote_addr": host, "remote_port": portN, "password": []string{"warm-e2e"},
		"ssl":       map[string]any{"cert": cert, "sni": "localhost"},
		"tcp":       map[string]any{"fast_open": true},
		"fastrojan": ext,
	}
	if m, ok := ext["mux"]; ok { // trojan-go's "mux" object is top-level
		delete(ext, "mux")
		cc["mux"] = m
	}
	ccfg := writeJSON(t, dir, "client.json", cc)
	cli := startIn(t, p.Client, ccfg)
	waitIn(t, p.Client, cli, "127.0.0.1:1080")
	socks, err := proxy.SOCKS5("tcp", "127.0.0.1:1080", nil, hostDialer{p.Client})
	if err != nil {
		t.Fatal(err)
	}
	return &warmRig{p: p, rtt: rtt, url: "http://" + originAddr + "/", socks: socks.(proxy.ContextDialer),
		clientMet: "127.0.0.1:9101", cli: cli, serverAddr: srvAddr}
}

// fetch GETs the origin page through SOCKS5 on a new connection and returns the time from the
// application's connect to the first byte of the response.
func (r *warmRig) fetch(ctx context.Context) (time.Duration, error) {
	tr := &http.Transport{DialContext: r.socks.DialContext, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	var first time.Time
	trace := &httptrace.ClientTrace{GotFirstResponseByte: func() { first = time.Now() }}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, r.url, nil)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK || string(body) != "origin page\n" {
		return 0, fmt.Errorf("origin answered %s %q", resp.Status, body)
	}
	return first.Sub(start), nil
}

// fetchPipelined is fetch for an application that sends its SOCKS5 greeting, CONNECT and HTTP
// request in one write (SOCKS5 "optimistic data"), so that the time measured is the proxy's path and
// not the application's own loopback exchanges with the SOCKS5 port: from the write on the connection
// to the SOCKS5 port to the first byte of the HTTP response.
func (r *warmRig) fetchPipelined() (time.Duration, error) {
	origin, err := netip.ParseAddrPort(strings.TrimSuffix(strings.TrimPrefix(r.url, "http://"), "/"))
	if err != nil {
		return 0, err
	}
	msg := []byte{5, 1, 0, 5, 1, 0, 1}
	msg = append(msg, origin.Addr().AsSlice()...)
	msg = append(msg, byte(origin.Port()>>8), byte(origin.Port()))
	msg = append(msg, "GET / HTTP/1.1\r\nHost: "+origin.String()+"\r\nConnection: close\r\n\r\n"...)
	c, err := hostDialer{r.p.Client}.Dial("tcp", "127.0.0.1:1080")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	start := time.Now() // after the connect: entering the lab host's namespace to dial is the test's cost
	if _, err := c.Write(msg); err != nil {
		return 0, err
	}
	replies := make([]byte, 2+10+1)
	if _, err := io.ReadFull(c, replies); err != nil {
		return 0, fmt.Errorf("socks5 replies and first byte: %w", err)
	}
	ttfb := time.Since(start)
	if replies[1] != 0 || replies[3] != 0 {
		return 0, fmt.Errorf("socks5 replies %x", replies[:12])
	}
	rest, err := io.ReadAll(c)
	if err != nil {
		return 0, err
	}
	resp := string(replies[12:]) + string(rest)
	if !strings.HasPrefix(resp, "HTTP/1.1 200 OK") || !strings.HasSuffix(resp, "origin page\n") {
		return 0, fmt.Errorf("origin answered %q", resp)
	}
	return ttfb, nil
}

// sequential runs warm-up fetches, then n fetches each started gap after the previous one ended,
// and returns their times to first byte.
func (r *warmRig) sequential(t *testing.T, warmup, n int, gap time.Duration) []time.Duration {
	t.Helper()
	var out []time.Duration
	for i := range warmup + n {
		d, err := r.fetchPipelined()
		if err != nil {
			t.Fatalf("fetch %d: %v", i, err)
		}
		if i >= warmup {
			out = append(out, d)
		}
		time.Sleep(gap)
	}
	return out
}

// floorOnce measures the warm path without our client: the test itself opens a TLS connection to
// the server from the client host, lets it idle briefly like a spare, then times its Trojan request
// with the HTTP GET to the first response byte. It is what the lab and the server cost, logged next
// to the client's figures as a baseline of the same run.
func (r *warmRig) floorOnce(t *testing.T) time.Duration {
	t.Helper()
	origin, _ := netip.ParseAddrPort(strings.TrimSuffix(strings.TrimPrefix(r.url, "http://"), "/"))
	hdr, err := trojan.AppendRequest(nil, trojan.Request{Hash: trojan.HashPassword("warm-e2e"), Cmd: trojan.CmdConnect, Dest: trojan.AddrFromAddrPort(origin)})
	if err != nil {
		t.Fatal(err)
	}
	msg := append(hdr, "GET / HTTP/1.1\r\nHost: "+origin.String()+"\r\nConnection: close\r\n\r\n"...)
	raw, err := hostDialer{r.p.Client}.Dial("tcp", r.serverAddr)
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost", CurvePreferences: []tls.CurveID{tls.X25519}})
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

// withFloor runs n of our fetches, each started gap after the previous one ended, and after every
// second one a baseline fetch (floorOnce): the two interleaved, so that a slow moment of the machine
// hits both rather than one of them. It returns our times to first byte and the baseline's.
func (r *warmRig) withFloor(t *testing.T, n int, gap time.Duration) (ours, floor []time.Duration) {
	t.Helper()
	for i := range n {
		d, err := r.fetchPipelined()
		if err != nil {
			t.Fatalf("fetch %d: %v", i, err)
		}
		ours = append(ours, d)
		time.Sleep(gap)
		if i%2 == 1 {
			floor = append(floor, r.floorOnce(t))
			time.Sleep(gap)
		}
	}
	return ours, floor
}

// maxFloorSpread is how far the baseline's 90th percentile may lie above its median before the
// measurement counts as disturbed. Undisturbed, the baseline's fetches lie within 0.5 ms of each other
// at 20 and 100 ms RTT. This VM has moments (seconds) when every process's wake-ups take 10-20 ms
// longer; such a moment hits our fetches and the baseline's alike, but not in equal numbers, and it
// once moved our median 4 ms above the baseline's while both were mostly slow samples.
const maxFloorSpread = time.Millisecond

// disturbed reports whether a baseline series shows one of the machine's slow moments: its 90th
// percentile more than maxFloorSpread above its median. A single slow fetch is not one.
func disturbed(floor []time.Duration) (yes bool, median, p90 time.Duration) {
	med, q90, _ := ttfbPercentiles(floor, time.Nanosecond)
	median, p90 = time.Duration(med), time.Duration(q90)
	return p90-median > maxFloorSpread, median, p90
}

// measure runs withFloor and returns the first of up to maxAttempts measurements whose baseline is
// not disturbed, pausing after a disturbed one for the slow stretch to pass. start, if set, runs
// before each attempt (to read counters). maxAttempts disturbed in a row fail the test: then the
// path itself (lab, our server, the origin) stalls, or the machine is too busy to measure on; a
// client that disturbed the baseline would fail here too.
func (r *warmRig) measure(t *testing.T, n int, gap time.Duration, start func()) (ours, floor []time.Duration) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		if start != nil {
			start()
		}
		ours, floor = r.withFloor(t, n, gap)
		bad, med, p90 := disturbed(floor)
		if !bad {
			return ours, floor
		}
		msg := fmt.Sprintf("attempt %d disturbed (baseline median %v, p90 %v); times to first byte: ours %v, baseline %v",
			attempt, med.Round(10*time.Microsecond), p90.Round(10*time.Microsecond), roundAll(ours), roundAll(floor))
		if attempt == maxAttempts {
			t.Errorf("the baseline was disturbed in %d measurements in a row: the lab, our server or the origin stalls, or the machine is too busy; last %s", maxAttempts, msg)
			return ours, floor
		}
		t.Logf("%s: measuring again after %v", msg, disturbedPause)
		time.Sleep(disturbedPause)
	}
}

// maxAttempts and disturbedPause bound measure's retries. The VM's slow stretches last seconds, and
// once three attempts in a row (about 20 s at 100 ms RTT) fell in one (2026-12-02).
const (
	maxAttempts    = 5
	disturbedPause = 3 * time.Second
)

// The disturbance check fires on a slow stretch and not on what an undisturbed baseline shows:
// spread of a few hundred microseconds, or one slow fetch among fifteen.
func TestWarmBaselineDisturbance(t *testing.T) {
	series := func(slow ...int) []time.Duration {
		var out []time.Duration
		for i := range 15 {
			d := 101600*time.Microsecond + time.Duration(i%5)*100*time.Microsecond // 0.4 ms of jitter
			if slices.Contains(slow, i) {
				d += 12 * time.Millisecond
			}
			out = append(out, d)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		slow []int
		want bool
	}{
		{"jitter only", nil, false},
		{"one slow fetch", []int{7}, false},
		{"a slow stretch", []int{9, 10, 11, 12}, true},
	} {
		if got, med, p90 := disturbed(series(tc.slow...)); got != tc.want {
			t.Errorf("%s: disturbed %v (median %v, p90 %v), want %v", tc.name, got, med, p90, tc.want)
		}
	}
}

// Bounds on what our client may add to the same run's baseline (floor): the SOCKS5 exchange on
// loopback, the request through one more process each way; with mux also smux's goroutine hand-offs
// on both ends. Measured on a 2-core VM: 0.4-0.95 ms for the pool, 0.7-1.9 ms for mux; a spare
// opened together with the stream's request (before the pool waited for the answer) made the pool's
// 1.3-1.5 ms.
const (
	maxPoolCost = 1500 * time.Microsecond
	maxMuxCost  = 2500 * time.Microsecond
)

// checkWarm asserts that our client adds at most maxCost to the median of the same run's baseline,
// and logs the target (≤ 1.10 RTT at 20 ms, ≤ 1.03 at 100 ms) as met or not. The target is
// not asserted: on a 2-core VM the baseline alone (lab, server, origin: ~1.5 ms of wake-ups) is
// 1.06-1.09 RTT at 20 ms and 1.014-1.019 at 100 ms, which leaves the client 0.2-0.8 ms, less than its
// run-to-run spread (README "Warm path").
func checkWarm(t *testing.T, what string, rtt time.Duration, med, floorMed, target float64, maxCost time.Duration, ttfb, floor []time.Duration) {
	t.Helper()
	cost := time.Duration((med - floorMed) * float64(rtt))
	met := "met"
	if med > target {
		met = "NOT met"
	}
	t.Logf("RTT %v, %s: median %.3f RTT, baseline %.3f RTT: our client adds %v; the issue's target ≤ %.2f RTT is %s",
		rtt, what, med, floorMed, cost.Round(10*time.Microsecond), target, met)
	if cost > maxCost {
		t.Errorf("our client adds %v to the baseline's median, want ≤ %v; times to first byte in order: ours %v, baseline %v",
			cost.Round(10*time.Microsecond), maxCost, roundAll(ttfb), roundAll(floor))
	}
}

// roundAll rounds durations to 10 µs, for a log line.
func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(10 * time.Microsecond)
	}
	return out
}

// pooled returns the client's count of streams that rode a spare (ready or being opened).
func (r *warmRig) pooled(t *testing.T) float64 {
	m := scrapeIn(t, r.p.Client, r.clientMet)
	hit := metric(m, `fastrojan_pool_streams_total{result="hit"}`)
	joined := metric(m, `fastrojan_pool_streams_total{result="joined"}`)
	if hit < 0 || joined < 0 {
		return -1
	}
	return hit + joined
}

// Proof of the warm path: with the default config (TFO on), sequential new connections 20 ms apart
// after a short warm-up reach their first byte at most maxPoolCost after the same run's baseline
// (the test's own TLS connection to our server), at 20 and 100 ms RTT, and every stream rode a
// spare. The 1.10 / 1.03 RTT (trojan-go's mux on the same lab: 1.12, 1.02) is logged: see
// checkWarm.
func TestWarmPathPool(t *testing.T) {
	for _, tc := range []struct {
		rtt time.Duration
		max float64
	}{{20 * time.Millisecond, 1.10}, {100 * time.Millisecond, 1.03}} {
		t.Run(tc.rtt.String(), func(t *testing.T) {
			r := newWarmRig(t, tc.rtt, nil, nil)
			const warmup, n = 3, 30
			for i := range warmup { // cookies, a first burst of spares
				if _, err := r.fetch(context.Background()); err != nil {
					t.Fatalf("warm-up %d: %v", i, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			var before float64
			ttfb, floor := r.measure(t, n, 20*time.Millisecond, func() { before = r.pooled(t) })
			rode := r.pooled(t) - before
			med, _, p99 := ttfbPercentiles(ttfb, tc.rtt)
			t.Logf("RTT %v, pool on: TTFB median %.3f RTT, p99 %.3f RTT, min %.3f RTT; %v of %d streams rode a spare", tc.rtt, med, p99, float64(slices.Min(ttfb))/float64(tc.rtt), rode, n)
			fmed, _, fp99 := ttfbPercentiles(floor, tc.rtt)
			t.Logf("RTT %v, baseline of the same run without our client (a TLS connection opened by the test, then the request; interleaved): median %.3f RTT, p99 %.3f RTT", tc.rtt, fmed, fp99)
			checkWarm(t, "pool on", tc.rtt, med, fmed, tc.max, maxPoolCost, ttfb, floor)
			if rode != n {
				t.Errorf("%v of %d streams rode a spare (metrics), want all", rode, n)
			}
		})
	}
}

// With "spares": 0 the client opens a connection per stream: the cold TFO figure, 2 RTT (≤ 2.10 at
// 100 ms), every connection's ClientHello in its SYN (the kernel's TCPFastOpenActive), and no pool in
// the metrics. At 20 ms RTT the 2.10 is logged, not asserted: a full TLS handshake's CPU
// (0.67 ms for both ends together on a 2-core VM) and some twenty wake-ups cost 4-6 ms there,
// 0.2-0.3 RTT; the test asserts < 2.5 RTT instead, which a connection without TFO (3 RTT) cannot reach,
// and TestColdPathLevelWithTrojanGFW holds the 20 ms figure to trojan-gfw's on the same link.
func TestWarmPathSparesOff(t *testing.T) {
	for _, rtt := range []time.Duration{20 * time.Millisecond, 100 * time.Millisecond} {
		t.Run(rtt.String(), func(t *testing.T) {
			r := newWarmRig(t, rtt, map[string]any{"pool": map[string]any{"spares": 0}}, nil)
			for i := range 2 { // cookies
				if _, err := r.fetchPipelined(); err != nil {
					t.Fatalf("warm-up %d: %v", i, err)
				}
			}
			active := func() uint64 {
				m, err := r.p.Client.TcpExt()
				if err != nil {
					t.Fatal(err)
				}
				return m["TCPFastOpenActive"]
			}
			const n = 20
			resumed := func() float64 {
				return metric(scrapeIn(t, r.p.Client, r.clientMet), `fastrojan_tls_handshakes_total{resumed="true",role="client"}`)
			}
			tfoBefore, resumedBefore := active(), resumed()
			ttfb := r.sequential(t, 0, n, 20*time.Millisecond)
			tfo := active() - tfoBefore
			if got := resumed() - resumedBefore; got != n {
				// trojan-gfw's defaults (reuse_session on, session_ticket off): the server's session cache.
				t.Errorf("%v of %d connections resumed their TLS session, want every one", got, n)
			}
			med, _, p99 := ttfbPercentiles(ttfb, rtt)
			met := "met"
			if med > 2.10 {
				met = "NOT met"
			}
			t.Logf("RTT %v, spares 0: TTFB median %.3f RTT, p99 %.3f RTT, min %.3f RTT; %d of %d connections sent data in the SYN; the issue's ≤ 2.10 RTT is %s",
				rtt, med, p99, float64(slices.Min(ttfb))/float64(rtt), tfo, n, met)
			if rtt >= 100*time.Millisecond && med > 2.10 {
				t.Errorf("median TTFB %.3f RTT with spares 0, want the cold TFO figure ≤ 2.10", med)
			}
			if med > 2.5 {
				t.Errorf("median TTFB %.3f RTT with spares 0, want < 2.5 (TFO saves the third round trip)", med)
			}
			if tfo < n {
				t.Errorf("TCPFastOpenActive grew by %d over %d connections, want every one", tfo, n)
			}
			if med < 1.5 {
				t.Errorf("median TTFB %.3f RTT with spares 0: streams must not be warm", med)
			}
			if got := r.pooled(t); got != -1 {
				t.Errorf("pool metrics present with spares 0 (%v pooled streams)", got)
			}
		})
	}
}

// The cold path at 20 ms RTT against trojan-gfw (C++, OpenSSL) on the same lab link: the issue's
// 2.10 RTT is not reached here by either (both a median of 2.21-2.23 on this 2-core VM, where the
// lab, two TLS ends, the origin and some twenty process wake-ups cost 4-5 ms), so what is asserted
// is the comparison: fastrojan with "spares": 0 (one new connection per stream) no slower than
// trojan-gfw by more than 0.03 RTT at the median, both with their ClientHello accepted in the SYN.
// Fetches are taken in turn, one of each, so a slow moment of the machine hits both.
func TestColdPathLevelWithTrojanGFW(t *testing.T) {
	const rtt, n = 20 * time.Millisecond, 40
	p, origin, peers := lossyLab(t, netlab.PathOptions{RTT: rtt, OriginVeth: true}, true)
	results := fetchInTurn(t, p, peers, origin, 3, n, rtt)
	meds := make([]float64, len(peers))
	for k, pr := range peers {
		ttfb, accepted := ttfbsOf(results[k])
		med, p90, p99 := ttfbPercentiles(ttfb, rtt)
		meds[k] = med
		t.Logf("RTT %v, %s, one new connection per stream: TTFB median %.3f RTT, p90 %.3f, p99 %.3f; SYN data accepted in %d of %d",
			rtt, pr.name, med, p90, p99, accepted, n)
		if accepted < n*95/100 {
			t.Errorf("%s: SYN data accepted in %d of %d fetches, want ≥ 95%% (the comparison is of TFO paths)", pr.name, accepted, n)
		}
	}
	if meds[0] > meds[1]+0.03 {
		t.Errorf("fastrojan (spares 0) median %.3f RTT, trojan-gfw %.3f: want no more than 0.03 RTT slower", meds[0], meds[1])
	}
}

// A page load on a client that was idle: the page itself (no spare: the pool never fills an idle
// client), then 30 subresource connections within 300 ms. Every stream must succeed; the hit rate
// and the times are logged for the README (the pool's defaults were chosen from them).
func TestWarmPathBurst(t *testing.T) {
	for _, rtt := range []time.Duration{20 * time.Millisecond, 100 * time.Millisecond} {
		t.Run(rtt.String(), func(t *testing.T) {
			// Linger 1s instead of 10s only to keep the test short: an idle client comes sooner.
			r := newWarmRig(t, rtt, map[string]any{"pool": map[string]any{"linger": "1s"}}, nil)
			if _, err := r.fetchPipelined(); err != nil { // TFO cookies; then the pool empties
				t.Fatal(err)
			}
			time.Sleep(1500 * time.Millisecond) // past linger: an idle client holds no spare
			m := scrapeIn(t, r.p.Client, r.clientMet)
			if ready := metric(m, "fastrojan_pool_spares_ready"); ready != 0 {
				t.Fatalf("%v spares held by an idle client", ready)
			}
			hits := func() float64 {
				return metric(scrapeIn(t, r.p.Client, r.clientMet), `fastrojan_pool_streams_total{result="hit"}`)
			}
			if _, err := r.fetchPipelined(); err != nil {
				t.Fatal(err)
			}
			before, hitsBefore := r.pooled(t), hits()
			const n = 30
			ttfb := make([]time.Duration, n)
			errs := make(chan error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					d, err := r.fetchPipelined()
					ttfb[i] = d
					errs <- err
				}()
				time.Sleep(10 * time.Millisecond)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			rode, hit := r.pooled(t)-before, hits()-hitsBefore
			med, _, p99 := ttfbPercentiles(ttfb, rtt)
			t.Logf("RTT %v, burst of %d in 300 ms after the page: %v rode a spare (%v ready, %v still opening): hit rate %.0f%% (ready %.0f%%); TTFB median %.2f RTT, p99 %.2f RTT",
				rtt, n, rode, hit, rode-hit, 100*rode/n, 100*hit/n, med, p99)
			if rode < 1 {
				t.Errorf("no stream of the burst rode a spare")
			}
		})
	}
}

// With trojan-go's mux on (top-level "mux": {"enabled": true}), sequential new streams ride one
// session: the same checks as the pool (checkWarm), and the client's metrics count the streams.
func TestWarmPathMux(t *testing.T) {
	for _, tc := range []struct {
		rtt time.Duration
		max float64
	}{{20 * time.Millisecond, 1.10}, {100 * time.Millisecond, 1.03}} {
		t.Run(tc.rtt.String(), func(t *testing.T) {
			r := newWarmRig(t, tc.rtt, map[string]any{"mux": map[string]any{"enabled": true}}, nil)
			const n = 30
			r.sequential(t, 3, 0, 20*time.Millisecond) // warm-up: the session
			var streamsBefore float64
			ttfb, floor := r.measure(t, n, 20*time.Millisecond, func() {
				streamsBefore = metric(scrapeIn(t, r.p.Client, r.clientMet), `fastrojan_mux_streams_total{role="client"}`)
			})
			med, _, p99 := ttfbPercentiles(ttfb, tc.rtt)
			m := scrapeIn(t, r.p.Client, r.clientMet)
			sessions := metric(m, `fastrojan_mux_sessions_total{role="client"}`)
			streams := metric(m, `fastrojan_mux_streams_total{role="client"}`) - streamsBefore
			t.Logf("RTT %v, mux on: TTFB median %.3f RTT, p99 %.3f RTT, min %.3f RTT; %v streams over %v session(s)",
				tc.rtt, med, p99, float64(slices.Min(ttfb))/float64(tc.rtt), streams, sessions)
			fmed, _, fp99 := ttfbPercentiles(floor, tc.rtt)
			t.Logf("RTT %v, baseline of the same run without our client (interleaved): median %.3f RTT, p99 %.3f RTT", tc.rtt, fmed, fp99)
			checkWarm(t, "mux on", tc.rtt, med, fmed, tc.max, maxMuxCost, ttfb, floor)
			if sessions != 1 || streams != n {
				t.Errorf("%v streams over %v sessions, want %d over 1", streams, sessions, n)
			}
		})
	}
}
