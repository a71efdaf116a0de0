package doctor

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/netlab"
	"github.com/fastrojan/fastrojan/internal/tfo"
	"github.com/fastrojan/fastrojan/internal/tlsconf"
)

func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		_, _ = netlab.SweepStale()
	}
	os.Exit(m.Run())
}

func envOf(h *netlab.Host) Env { return Env{Do: h.Do} }

func serverConfig() *config.Config {
	cfg := config.Default(config.RunServer)
	cfg.LocalAddr, cfg.LocalPort = "0.0.0.0", 443
	cfg.TCP.FastOpen = true
	return cfg
}

func clientConfig(server netip.Addr) *config.Config {
	cfg := config.Default(config.RunClient)
	cfg.RemoteAddr, cfg.RemotePort = server.String(), 443
	cfg.TCP.FastOpen = true
	cfg.SSL.Verify = false
	return cfg
}

// findingWith returns the first finding of check at sev whose message contains msg.
func findingWith(t *testing.T, rep *Report, check string, sev Severity, msg string) Finding {
	t.Helper()
	for _, f := range rep.Findings(sev) {
		if f.Check == check && f.Severity == sev && strings.Contains(f.Message, msg) {
			return f.Finding
		}
	}
	var b strings.Builder
	_ = rep.WriteText(&b)
	t.Fatalf("no %s finding of check %s containing %q; report:\n%s", sev, check, msg, b.String())
	return Finding{}
}

func TestLabServerBitOff(t *testing.T) {
	lab := netlab.New(t)
	h, err := lab.AddHost("server", netlab.HostOptions{TCPFastOpen: 1})
	if err != nil {
		t.Fatal(err)
	}
	rep := Run(context.Background(), Checks(Options{Config: serverConfig(), Env: envOf(h)}), 10*time.Second)
	if rep.ExitCode() != ExitFail {
		t.Errorf("exit %d, want %d", rep.ExitCode(), ExitFail)
	}
	f := findingWith(t, rep, "sysctl", Fail, "server bit 0x2 is off")
	if f.Fix != "sysctl -w net.ipv4.tcp_fastopen=3\necho net.ipv4.tcp_fastopen=3 > /etc/sysctl.d/60-tcp-fastopen.conf   # keep it after reboot" {
		t.Errorf("fix %q", f.Fix)
	}
	f = findingWith(t, rep, "config", Fail, "would not get TFO")
	if !strings.HasPrefix(f.Fix, "sysctl -w net.ipv4.tcp_fastopen=3") {
		t.Errorf("config fix %q", f.Fix)
	}
	findingWith(t, rep, "selftest", Fail, "lacks the server bit 0x2")
	// A server without a farm secret is told what a farm needs, without failing for it.
	f = findingWith(t, rep, "farm", Note, "no TFO farm secret")
	if !strings.Contains(f.Fix, `"fastrojan": {"farm": {"secret_file": "`+farmSecretFile+`"}}`) {
		t.Errorf("farm fix %q", f.Fix)
	}
}

func TestLabClientBitOff(t *testing.T) {
	lab := netlab.New(t)
	h, err := lab.AddHost("client", netlab.HostOptions{TCPFastOpen: 0x402})
	if err != nil {
		t.Fatal(err)
	}
	rep := Run(context.Background(), Checks(Options{Config: clientConfig(netip.MustParseAddr("192.0.2.1")), Env: envOf(h)}), 10*time.Second)
	if rep.ExitCode() != ExitFail {
		t.Errorf("exit %d, want %d", rep.ExitCode(), ExitFail)
	}
	// The fix keeps the bits that were set (0x400) and adds the client bit.
	f := findingWith(t, rep, "sysctl", Fail, "client bit 0x1 is off")
	if !strings.HasPrefix(f.Fix, "sysctl -w net.ipv4.tcp_fastopen=1027\n") {
		t.Errorf("fix %q", f.Fix)
	}
	findingWith(t, rep, "selftest", Fail, "lacks the client bit 0x1")
}

// With both bits on, the same checks pass and the self-test shows the cookie being fetched and
// then used: the kernel, not a flag of ours, says so.
func TestLabHealthy(t *testing.T) {
	lab := netlab.New(t)
	h, err := lab.AddHost("both", netlab.HostOptions{TCPFastOpen: 3})
	if err != nil {
		t.Fatal(err)
	}
	rep := Run(context.Background(), Checks(Options{Config: clientConfig(netip.MustParseAddr("192.0.2.1")), Env: envOf(h)}), 10*time.Second)
	var b strings.Builder
	_ = rep.WriteText(&b)
	if rep.ExitCode() != ExitOK || len(rep.Findings(Warn)) > 0 {
		t.Fatalf("healthy host: exit %d\n%s", rep.ExitCode(), b.String())
	}
	for _, want := range []string{"client cookie_requested, server not_attempted", "client accepted, server accepted", "TFO works on this host: cookie_requested → accepted"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}

// After the self-test the counters and the cookie cache of the namespace show what it did.
func TestLabCountersAndCookies(t *testing.T) {
	lab := netlab.New(t)
	h, err := lab.AddHost("both", netlab.HostOptions{TCPFastOpen: 3})
	if err != nil {
		t.Fatal(err)
	}
	env := envOf(h)
	rep := Run(context.Background(), []Check{SelfTestCheck{Env: env}}, 10*time.Second)
	if rep.Results[0].Status != StatusOK {
		t.Fatalf("self-test: %+v", rep.Results[0])
	}
	rep = Run(context.Background(), []Check{CountersCheck{Env: env}, CookiesCheck{Env: env}}, 10*time.Second)
	text := fmt.Sprint(rep.Results[0].Lines)
	for _, want := range []string{
		"TCPFastOpenActive                 1  client: SYNs with data the server accepted",
		"TCPFastOpenPassive                1  server:",
		"TCPFastOpenCookieReqd             1  server:",
		"client TFO success: 100% of 1 attempts",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("counters lack %q:\n%s", want, strings.Join(rep.Results[0].Lines, "\n"))
		}
	}
	text = strings.Join(rep.Results[1].Lines, "\n")
	if !strings.Contains(text, "1 with a TFO cookie") || !strings.Contains(text, ": cookie yes (8 bytes), fastopen MSS") {
		t.Errorf("cookie cache:\n%s", text)
	}
}

// tlsServer accepts TLS over a TFO listener on h at addr until the test ends.
func tlsServer(t *testing.T, h *netlab.Host, addr string) { t.Helper(); tlsServerQueue(t, h, addr, 64) }

// tlsServerQueue is tlsServer with a TFO queue of qlen.
func tlsServerQueue(t *testing.T, h *netlab.Host, addr string, qlen int) {
	t.Helper()
	certPEM, keyPEM, err := tlsconf.GenerateSelfSigned([]string{"probe.test"})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	var ln net.Listener
	if err := h.Do(func() (err error) {
		ln, err = tfo.Listen(context.Background(), "tcp", addr, qlen, slog.New(slog.DiscardHandler))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				tc := tls.Server(c, cfg)
				if tc.Handshake() == nil {
					_, _ = tc.Read(make([]byte, 1)) // until the client closes
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
}

func TestLabProbe(t *testing.T) {
	const rtt = 20 * time.Millisecond
	p := netlab.NewPath(t, netlab.PathOptions{RTT: rtt})
	addr := netip.AddrPortFrom(p.ServerAddr.V4, 443).String()
	tlsServer(t, p.Server, addr)
	probe := func() *Report {
		return Run(context.Background(), []Check{&ProbeCheck{Env: envOf(p.Client), Addr: addr}}, 20*time.Second)
	}

	t.Run("accepted", func(t *testing.T) {
		rep := probe()
		if rep.ExitCode() != ExitOK {
			t.Fatalf("clean path: %+v", rep.Results[0])
		}
		findingWith(t, rep, "probe", OK, "delivers SYN data")
	})
	t.Run("blackhole", func(t *testing.T) {
		p.Link.SetDropSYNData(true)
		defer p.Link.SetDropSYNData(false)
		rep := probe()
		logReport(t, rep)
		f := findingWith(t, rep, "probe", Fail, "drops SYNs that carry data")
		if !strings.Contains(f.Fix, `"tcp": {"fast_open": false}`) {
			t.Errorf("fix %q", f.Fix)
		}
		if rep.ExitCode() != ExitFail {
			t.Errorf("exit %d", rep.ExitCode())
		}
		if got := p.Link.AtoB().Stats().SYNDataDrop; got == 0 {
			t.Error("the link dropped no SYN data: the probe did not send any")
		}
		// The kernel remembers the drops in its cookie cache, and the cookie check says so.
		rep = Run(context.Background(), []Check{CookiesCheck{Env: envOf(p.Client)}}, 10*time.Second)
		f = findingWith(t, rep, "cookies", Warn, "the path to "+p.ServerAddr.V4.String()+" dropped")
		if !strings.Contains(f.Fix, "fastrojan doctor --probe "+addr) {
			t.Errorf("cookie fix %q", f.Fix)
		}
	})
	t.Run("server off", func(t *testing.T) {
		// Forget the cookie: a server with TFO off never issues one.
		if err := p.Server.Sysctl("net.ipv4.tcp_fastopen", "1"); err != nil {
			t.Fatal(err)
		}
		defer p.Server.Sysctl("net.ipv4.tcp_fastopen", "3")
		if err := p.Client.Command("ip", "tcp_metrics", "flush", "all").Run(); err != nil {
			t.Fatal(err)
		}
		rep := probe()
		f := findingWith(t, rep, "probe", Fail, "never issued a TFO cookie")
		if !strings.Contains(f.Fix, "on the server: sysctl -w net.ipv4.tcp_fastopen=3") {
			t.Errorf("fix %q", f.Fix)
		}
	})
	t.Run("refused", func(t *testing.T) {
		rep := Run(context.Background(), []Check{&ProbeCheck{Env: envOf(p.Client), Addr: netip.AddrPortFrom(p.ServerAddr.V4, 444).String()}}, 20*time.Second)
		findingWith(t, rep, "probe", Fail, "failed")
	})
}

// Two server nodes behind one address, each with its kernel's own key: the client's flows
// alternate between them, and the probe names the cause (different keys) and the farm secret as
// the fix. With one key on both nodes the same probe is accepted, so the test can fail.
func TestLabFarmKeySecretMissing(t *testing.T) {
	lab := netlab.New(t)
	client, err := lab.AddHost("client", netlab.HostOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var nodes []*netlab.Host
	for i := range 2 {
		h, err := lab.AddHost(fmt.Sprintf("node%d", i), netlab.HostOptions{})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, h)
	}
	link, err := lab.ConnectECMP(client, nodes, netlab.LinkOptions{Delay: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.AddrPortFrom(link.AddrB().V4, 443).String()
	for _, h := range nodes {
		tlsServer(t, h, addr)
	}
	probe := &ProbeCheck{Env: envOf(client), Addr: addr, Conns: 4,
		beforeDial: func(i int) {
			if err := link.SteerNewFlows(i % 2); err != nil {
				panic(err)
			}
		}}

	rep := Run(context.Background(), []Check{probe, FarmCheck{Config: serverConfig()}}, 20*time.Second)
	logReport(t, rep)
	f := findingWith(t, rep, "probe", Fail, "different TFO keys")
	if !strings.Contains(f.Fix, `"fastrojan": {"farm": {"secret_file": "`+farmSecretFile+`"}}`) ||
		!strings.Contains(f.Fix, "fastrojan keys --new-secret "+farmSecretFile) {
		t.Errorf("fix %q", f.Fix)
	}
	findingWith(t, rep, "farm", Note, "no TFO farm secret")

	// Same key on both nodes: every connection after the first is accepted.
	for _, h := range nodes {
		if err := h.Sysctl("net.ipv4.tcp_fastopen_key", "00112233-44556677-8899aabb-ccddeeff"); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.Command("ip", "tcp_metrics", "flush", "all").Run(); err != nil {
		t.Fatal(err)
	}
	rep = Run(context.Background(), []Check{probe}, 20*time.Second)
	if rep.ExitCode() != ExitOK {
		var b strings.Builder
		_ = rep.WriteText(&b)
		t.Fatalf("shared key: %s", b.String())
	}
	findingWith(t, rep, "probe", OK, "delivers SYN data")
}

// logReport puts the report in the test log (go test -v shows what an operator would see).
func logReport(t *testing.T, rep *Report) {
	t.Helper()
	var b strings.Builder
	_ = rep.WriteText(&b)
	t.Logf("report:\n%s", b.String())
}
