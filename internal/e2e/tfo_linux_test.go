package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"github.com/fastrojan/fastrojan/internal/netlab"
	"github.com/fastrojan/fastrojan/internal/tfo"
)

// hostDialer dials from inside a lab host.
type hostDialer struct{ h *netlab.Host }

func (d hostDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := d.h.Do(func() (err error) {
		var nd net.Dialer
		c, err = nd.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

func (d hostDialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}

// startIn runs the fastrojan binary with config inside h; it is stopped like start's processes.
func startIn(t testing.TB, h *netlab.Host, config string) *proc {
	t.Helper()
	p := &proc{cmd: h.Command(binary, "-c", config), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start fastrojan in %s: %v", h.Name(), err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		if err := p.stop(15 * time.Second); err != nil && !strings.Contains(err.Error(), "signal") {
			t.Errorf("fastrojan in %s: %v", h.Name(), err)
		}
		if t.Failed() {
			t.Logf("fastrojan in %s output:\n%s", h.Name(), p.Output())
		}
	})
	return p
}

func waitIn(t testing.TB, h *netlab.Host, p *proc, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := hostDialer{h}.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-p.done:
			t.Fatalf("fastrojan exited: %v\n%s", p.err, p.Output())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("%s not listening in %s within 10s\n%s", addr, h.Name(), p.Output())
}

func scrapeIn(t *testing.T, h *netlab.Host, addr string) string {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: hostDialer{h}.DialContext}}
	resp, err := hc.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s in %s: %v", addr, h.Name(), err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// The shipped binary, configured only through config.json (tcp.fast_open and the metrics address),
// runs TFO on every leg over an emulated WAN: the client's and server's /metrics count the outcomes
// the kernels report, and the kernel counters they export are those of their own namespace.
func TestBinaryTFOEndToEnd(t *testing.T) {
	p := netlab.NewPath(t, netlab.PathOptions{RTT: 20 * time.Millisecond})
	dir := t.TempDir()
	cert, key := certFiles(t, dir)

	// Origin web page on its own host behind the server, accepting TFO.
	originAddr := netip.AddrPortFrom(p.OriginAddr.V4, 80).String()
	startLabOrigin(t, p, originAddr, func() (net.Listener, error) {
		return tfo.Listen(context.Background(), "tcp", originAddr, 16, nil)
	})

	serverAddr := netip.AddrPortFrom(p.ServerAddr.V4, 443).String()
	scfg := writeJSON(t, dir, "server.json", map[string]any{
		"run_type": "server", "local_addr": p.ServerAddr.V4.String(), "local_port": 443,
		"remote_addr": "127.0.0.1", "remote_port": 81, "password": []string{"tfo-e2e"}, "log_level": 0,
		"ssl":       map[string]any{"cert": cert, "key": key},
		"tcp":       map[string]any{"fast_open": true, "fast_open_qlen": 50},
		"fastrojan": map[string]any{"metrics_listen": "127.0.0.1:9100"},
	})
	ccfg := writeJSON(t, dir, "client.json", map[string]any{
		"run_type": "client", "local_addr": "127.0.0.1", "local_port": 1080,
		"remote_addr": p.ServerAddr.V4.String(), "remote_port": 443, "password": []string{"tfo-e2e"}, "log_level": 0,
		"ssl":       map[string]any{"cert": cert, "sni": "localhost"},
		"tcp":       map[string]any{"fast_open": true},
		"fastrojan": map[string]any{"metrics_listen": "127.0.0.1:9101", "pool": map[string]any{"spares": 0}}, // one connection per fetch
	})
	srv := startIn(t, p.Server, scfg)
	cli := startIn(t, p.Client, ccfg)
	waitIn(t, p.Server, srv, serverAddr)
	waitIn(t, p.Client, cli, "127.0.0.1:1080")

	const fetches = 6 // the first asks for cookies, the other five ride in SYNs
	socks, err := proxy.SOCKS5("tcp", "127.0.0.1:1080", nil, hostDialer{p.Client})
	if err != nil {
		t.Fatal(err)
	}
	for i := range fetches {
		tr := &http.Transport{DialContext: socks.(proxy.ContextDialer).DialContext, DisableKeepAlives: true}
		hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		resp, err := hc.Get("http://" + originAddr + "/")
		if err != nil {
			t.Fatalf("fetch %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "origin page\n" {
			t.Fatalf("fetch %d: %q", i, body)
		}
	}

	cm := scrapeIn(t, p.Client, "127.0.0.1:9101")
	for series, want := range map[string]float64{
		`fastrojan_tfo_outcomes_total{leg="client",outcome="cookie_requested"}`: 1,
		`fastrojan_tfo_outcomes_total{leg="client",outcome="accepted"}`:         fetches - 1,
		`fastrojan_connections_total{result="ok",role="client"}`:                fetches,
	} {
		if got := metric(cm, series); got != want {
			t.Errorf("client %s = %v, want %v", series, got, want)
		}
	}
	for _, series := range []string{`fastrojan_bytes_total{direction="up",role="client"}`, `fastrojan_bytes_total{direction="down",role="client"}`} {
		if got := metric(cm, series); got <= 0 {
			t.Errorf("client %s = %v, want > 0", series, got)
		}
	}
	// The server reports a connection when it ends; give the last one a moment.
	var sm string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		sm = scrapeIn(t, p.Server, "127.0.0.1:9100")
		if metric(sm, `fastrojan_connections_total{result="connect",role="server"}`) == fetches || time.Now().After(deadline) {
			break
		}
	}
	for series, want := range map[string]float64{
		`fastrojan_tfo_outcomes_total{leg="server_accept",outcome="accepted"}`:       fetches - 1,
		`fastrojan_tfo_outcomes_total{leg="server_accept",outcome="not_attempted"}`:  2, // waitIn's probe and the first fetch
		`fastrojan_tfo_outcomes_total{leg="server_dial",outcome="accepted"}`:         fetches - 1,
		`fastrojan_tfo_outcomes_total{leg="server_dial",outcome="cookie_requested"}`: 1,
		`fastrojan_connections_total{result="connect",role="server"}`:                fetches,
	} {
		if got := metric(sm, series); got != want {
			t.Errorf("server %s = %v, want %v", series, got, want)
		}
	}
	// The exported kernel counters are those of the process's own namespace.
	for _, tc := range []struct {
		h    *netlab.Host
		body string
		name string
	}{{p.Server, sm, "TCPFastOpenPassive"}, {p.Client, cm, "TCPFastOpenActive"}} {
		ext, err := tc.h.TcpExt()
		if err != nil {
			t.Fatal(err)
		}
		got := metric(tc.body, fmt.Sprintf(`fastrojan_kernel_tcp_ext_total{counter=%q}`, tc.name))
		if got != float64(ext[tc.name]) || got != fetches-1 {
			t.Errorf("%s: exported %s = %v, kernel says %d, want %d", tc.h.Name(), tc.name, got, ext[tc.name], fetches-1)
		}
	}
	out := cli.Output()
	if !strings.Contains(out, "TLS ClientHello fits in the TFO SYN") || !strings.Contains(out, "limit=1420") {
		t.Errorf("client did not log the ClientHello size check:\n%s", out)
	}
	if n := strings.Count(out, `msg="trojan handshake"`) - strings.Count(out, "tfo=accepted"); n != 1 {
		t.Errorf("want every handshake but the first logged with tfo=accepted:\n%s", out)
	}
}

// The demo reports the kernel's outcome of each fetch: accepted once a cookie is cached where the
// sysctl allows it; where the server bit is missing it says so, prints the fix, and still succeeds.
func TestDemoReportsRealOutcome(t *testing.T) {
	lab := netlab.New(t)
	for _, tc := range []struct {
		sysctl int
		want   []string
	}{
		{3, []string{"fetch 1/3: 200 OK", "tfo: cookie_requested", "fetch 2/3: 200 OK", "fetch 3/3: 200 OK", "demo ok: 3/3"}},
		{1, []string{"the server bit 0x2 missing, so the server cannot accept data in a SYN", "sysctl -w net.ipv4.tcp_fastopen=3", "demo ok: 3/3"}},
	} {
		h, err := lab.AddHost(fmt.Sprintf("demo%d", tc.sysctl), netlab.HostOptions{TCPFastOpen: tc.sysctl})
		if err != nil {
			t.Fatal(err)
		}
		out, err := h.Command(binary, "demo", "-n", "3").CombinedOutput()
		if err != nil {
			t.Fatalf("sysctl %d: demo failed: %v\n%s", tc.sysctl, err, out)
		}
		s := string(out)
		for _, w := range tc.want {
			if !strings.Contains(s, w) {
				t.Errorf("sysctl %d: output lacks %q:\n%s", tc.sysctl, w, s)
			}
		}
		// Fetches 2 and 3 resume the TLS session of the first (ssl.reuse_session, on by default).
		accepted := regexp.MustCompile(`(?m)^fetch [23]/3: .*tfo: accepted \(ClientHello \d+ bytes, resumed\)$`).FindAllString(s, -1)
		switch {
		case tc.sysctl == 3 && len(accepted) != 2:
			t.Errorf("sysctl 3: fetches 2 and 3 should show tfo: accepted, resumed:\n%s", s)
		case tc.sysctl == 1 && (len(accepted) != 0 || strings.Count(s, "tfo: cookie_requested") != 3):
			t.Errorf("sysctl 1: every fetch should show tfo: cookie_requested:\n%s", s)
		}
	}
}

// startLabOrigin serves "origin page" over HTTP on the listener listen makes inside the lab's origin
// host, until the test ends.
func startLabOrigin(t testing.TB, p *netlab.Path, addr string, listen func() (net.Listener, error)) {
	t.Helper()
	var ln net.Listener
	if err := p.Origin.Do(func() (err error) { ln, err = listen(); return err }); err != nil {
		t.Fatalf("origin listen %s: %v", addr, err)
	}
	origin := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "origin page\n")
	}), ReadHeaderTimeout: 5 * time.Second}
	go origin.Serve(ln)
	t.Cleanup(func() { origin.Close() })
}
