package metrics

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fastrojan/fastrojan/internal/tfo"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	ep, err := m.Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + ep.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s\n%s", resp.Status, b)
	}
	return string(b)
}

func wantLines(t *testing.T, body string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(body, "\n"+l+"\n") {
			t.Errorf("scrape lacks line %q", l)
		}
	}
}

func TestScrapeShowsWhatWasReported(t *testing.T) {
	m := New()
	m.Conn(RoleServer, "connect")
	m.Conn(RoleServer, "connect")
	m.Conn(RoleServer, "fallback")
	m.Bytes(RoleServer, 100, 2500)
	m.Handshake(RoleClient, 60*time.Millisecond)
	m.TFO(LegClient, tfo.Accepted)
	m.TFO(LegClient, tfo.Accepted)
	m.TFO(LegClient, tfo.CookieRequested)
	m.TFO(LegServerDial, tfo.NotAttempted)
	m.ClientHello(286, false)
	m.Resumed(RoleServer, true)
	m.Resumed(RoleServer, true)
	m.Resumed(RoleServer, false)
	body := scrape(t, m)
	wantLines(t, body,
		`fastrojan_connections_total{result="connect",role="server"} 2`,
		`fastrojan_connections_total{result="fallback",role="server"} 1`,
		`fastrojan_bytes_total{direction="down",role="server"} 2500`,
		`fastrojan_bytes_total{direction="up",role="server"} 100`,
		`fastrojan_tls_handshake_seconds_bucket{role="client",le="0.05"} 0`,
		`fastrojan_tls_handshake_seconds_bucket{role="client",le="0.075"} 1`,
		`fastrojan_tls_handshake_seconds_count{role="client"} 1`,
		`fastrojan_tfo_outcomes_total{leg="client",outcome="accepted"} 2`,
		`fastrojan_tfo_outcomes_total{leg="client",outcome="cookie_requested"} 1`,
		`fastrojan_tfo_outcomes_total{leg="server_dial",outcome="not_attempted"} 1`,
		`fastrojan_client_hello_bytes{resumed="false"} 286`,
		`fastrojan_tls_handshakes_total{resumed="true",role="server"} 2`,
		`fastrojan_tls_handshakes_total{resumed="false",role="server"} 1`,
	)
	if !strings.Contains(body, "go_goroutines ") {
		t.Error("Go runtime metrics missing")
	}
}

func TestKernelCounters(t *testing.T) {
	k := NewKernelTFOCollector().(*kernelTFO)
	k.read = func() (map[string]uint64, error) {
		return map[string]uint64{"TCPFastOpenActive": 7, "TCPFastOpenPassive": 5, "SyncookiesSent": 9, "ListenOverflows": 3, "TCPSACKReneging": 4}, nil
	}
	m := New()
	m.reg.Unregister(NewKernelTFOCollector()) // same descriptor: replaced by the fake
	if err := m.Register(k); err != nil {
		t.Fatal(err)
	}
	body := scrape(t, m)
	wantLines(t, body,
		`fastrojan_kernel_tcp_ext_total{counter="TCPFastOpenActive"} 7`,
		`fastrojan_kernel_tcp_ext_total{counter="TCPFastOpenPassive"} 5`,
		`fastrojan_kernel_tcp_ext_total{counter="SyncookiesSent"} 9`,
		`fastrojan_kernel_tcp_ext_total{counter="ListenOverflows"} 3`)
	if strings.Contains(body, "TCPSACKReneging") {
		t.Error("a TcpExt counter that is neither TFO nor listener exported")
	}

	// A failing read is reported without hiding the other metrics.
	k.read = func() (map[string]uint64, error) { return nil, errors.New("no /proc here") }
	m.TFO(LegClient, tfo.Accepted)
	body = scrape(t, m)
	if !strings.Contains(body, `fastrojan_tfo_outcomes_total{leg="client",outcome="accepted"} 1`) {
		t.Errorf("other metrics hidden by the failing collector:\n%s", body)
	}
}

// On Linux the real collector reads this process's namespace.
func TestKernelCountersReal(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("TcpExt counters exist on Linux only")
	}
	before, err := tfo.ReadTcpExt()
	if err != nil {
		t.Fatal(err)
	}
	body := scrape(t, New())
	if _, ok := before["TCPFastOpenActive"]; ok && !strings.Contains(body, `fastrojan_kernel_tcp_ext_total{counter="TCPFastOpenActive"} `) {
		t.Errorf("TCPFastOpenActive missing from the scrape")
	}
}

func TestRegisterOtherCollectors(t *testing.T) {
	m := New()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "fastrojan_store_up", Help: "test"})
	g.Set(1)
	if err := m.Register(g); err != nil {
		t.Fatal(err)
	}
	if err := m.Register(g); err == nil {
		t.Error("registering the same collector twice succeeded")
	}
	n := 3
	if err := m.GaugeFunc("fastrojan_test_active", "test", func() float64 { return float64(n) }); err != nil {
		t.Fatal(err)
	}
	wantLines(t, scrape(t, m), "fastrojan_store_up 1", "fastrojan_test_active 3")
}

func TestNilMetricsIsANoOp(t *testing.T) {
	var m *Metrics
	m.Conn(RoleClient, "ok")
	m.Bytes(RoleClient, 1, 1)
	m.Handshake(RoleClient, time.Second)
	m.TFO(LegClient, tfo.Accepted)
	m.ClientHello(300, true)
	if err := m.Register(prometheus.NewGauge(prometheus.GaugeOpts{Name: "x", Help: "x"})); err != nil {
		t.Error(err)
	}
	if err := m.GaugeFunc("y", "y", func() float64 { return 0 }); err != nil {
		t.Error(err)
	}
}

func TestEndpointClose(t *testing.T) {
	ep, err := New().Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := ep.Addr().String()
	if err := ep.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ep.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	hc := &http.Client{Timeout: time.Second}
	if resp, err := hc.Get("http://" + addr + "/metrics"); err == nil {
		resp.Body.Close()
		t.Error("endpoint still serves after Close")
	}
}

// fastrojan.pprof: the endpoint serves Go's heap profile only when asked to.
func TestServePprof(t *testing.T) {
	for _, pprof := range []bool{true, false} {
		_, part, ln, err := Serve("127.0.0.1:0", pprof, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + ln.Addr().String() + "/debug/pprof/heap")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got, want := resp.StatusCode == http.StatusOK && len(b) > 0, pprof; got != want {
			t.Errorf("pprof %v: GET /debug/pprof/heap = %s (%d bytes)", pprof, resp.Status, len(b))
		}
		if err := part.Stop(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}
