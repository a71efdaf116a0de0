package e2e

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"github.com/fastrojan/fastrojan/internal/netlab"
)

// The shipped binary on a path that drops SYNs with data (README "Hostile paths"): no fetch waits
// for the kernel's one-second SYN retransmit; the client logs the detection once, with the reason,
// and its /metrics show the server disabled and the one race won by plain TCP; the server logs
// nothing above debug for the abandoned attempt.
func TestBinaryHostilePathDropSYNData(t *testing.T) {
	const rtt = 20 * time.Millisecond
	p := netlab.NewPath(t, netlab.PathOptions{RTT: rtt})
	dir := t.TempDir()
	cert, key := certFiles(t, dir)

	originAddr := netip.AddrPortFrom(p.OriginAddr.V4, 80).String()
	startLabOrigin(t, p, originAddr, func() (net.Listener, error) { return net.Listen("tcp", originAddr) })

	serverAddr := netip.AddrPortFrom(p.ServerAddr.V4, 443).String()
	scfg := writeJSON(t, dir, "server.json", map[string]any{
		"run_type": "server", "local_addr": p.ServerAddr.V4.String(), "local_port": 443,
		"remote_addr": "127.0.0.1", "remote_port": 81, "password": []string{"hostile"}, "log_level": 0,
		"ssl": map[string]any{"cert": cert, "key": key},
		"tcp": map[string]any{"fast_open": true},
	})
	ccfg := writeJSON(t, dir, "client.json", map[string]any{
		"run_type": "client", "local_addr": "127.0.0.1", "local_port": 1080,
		"remote_addr": p.ServerAddr.V4.String(), "remote_port": 443, "password": []string{"hostile"}, "log_level": 0,
		"ssl": map[string]any{"cert": cert, "sni": "localhost"},
		"tcp": map[string]any{"fast_open": true},
		// One connection per fetch, so each fetch is one TFO attempt (spares would race in parallel).
		"fastrojan": map[string]any{"metrics_listen": "127.0.0.1:9101", "pool": map[string]any{"spares": 0}},
	})
	srv := startIn(t, p.Server, scfg)
	cli := startIn(t, p.Client, ccfg)
	waitIn(t, p.Server, srv, serverAddr)
	waitIn(t, p.Client, cli, "127.0.0.1:1080")
	p.Link.SetDropSYNData(true)

	socks, err := proxy.SOCKS5("tcp", "127.0.0.1:1080", nil, hostDialer{p.Client})
	if err != nil {
		t.Fatal(err)
	}
	const fetches = 5 // the first asks for a cookie; the SYNs with data of the second and third are dropped
	for i := range fetches {
		tr := &http.Transport{DialContext: socks.(proxy.ContextDialer).DialContext, DisableKeepAlives: true}
		hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		start := time.Now()
		resp, err := hc.Get("http://" + originAddr + "/")
		if err != nil {
			t.Fatalf("fetch %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		if string(body) != "origin page\n" {
			t.Fatalf("fetch %d: %q", i, body)
		}
		if took > 500*time.Millisecond {
			t.Errorf("fetch %d took %v: it waited for a SYN retransmit", i, took)
		}
	}

	cm := scrapeIn(t, p.Client, "127.0.0.1:9101")
	for series, want := range map[string]float64{
		`fastrojan_tfo_path_state{server="` + serverAddr + `",state="disabled"}`:             1,
		`fastrojan_tfo_path_transitions_total{server="` + serverAddr + `",state="disabled"}`: 1,
		`fastrojan_tfo_races_started_total{server="` + serverAddr + `"}`:                     2,
		`fastrojan_tfo_races_won_total{server="` + serverAddr + `",winner="plain"}`:          2,
	} {
		if got := metric(cm, series); got != want {
			t.Errorf("client %s = %v, want %v", series, got, want)
		}
	}
	out := cli.Output()
	// One lost SYN is what random loss looks like (suspect, debug); the second in a row on a path
	// that never carried SYN data is the verdict (one info line with the reason).
	if n := strings.Count(out, `msg="tfo path state"`); n != 2 || strings.Count(out, "to=disabled") != 1 || !strings.Contains(out, "SYN data dropped on the path") {
		t.Errorf("want one debug line (suspect) and one line for the detection, with its reason; client output:\n%s", out)
	}
	time.Sleep(100 * time.Millisecond) // the server logs a connection when it ends
	for _, line := range strings.Split(srv.Output(), "\n") {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			t.Errorf("server: %s", line)
		}
	}
}
