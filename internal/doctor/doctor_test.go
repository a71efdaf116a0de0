package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/tfo"
)

// fakeCheck reports what it is told, optionally after a delay.
type fakeCheck struct {
	name  string
	delay time.Duration
	sev   Severity
	fix   string
	err   error
}

func (f fakeCheck) Name() string { return f.name }
func (f fakeCheck) Run(ctx context.Context, out *Out) error {
	select {
	case <-time.After(f.delay):
	case <-ctx.Done():
		return ctx.Err()
	}
	out.Logf("looked at %s", f.name)
	if f.sev > OK {
		out.Report(f.sev, f.name+" is broken", f.fix)
	}
	return f.err
}

func TestRunParallelWithTimeouts(t *testing.T) {
	checks := []Check{
		fakeCheck{name: "slow-a", delay: 300 * time.Millisecond},
		fakeCheck{name: "slow-b", delay: 300 * time.Millisecond, sev: Warn, fix: "do b"},
		fakeCheck{name: "stuck", delay: time.Hour},
		fakeCheck{name: "other-os", err: fmt.Errorf("x: %w", errors.ErrUnsupported)},
		fakeCheck{name: "broken", err: errors.New("cannot read")},
	}
	start := time.Now()
	rep := Run(context.Background(), checks, 600*time.Millisecond)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Run took %v: checks did not run in parallel or the timeout was not applied", d)
	}
	want := []Status{StatusOK, StatusWarn, StatusError, StatusNA, StatusError}
	for i, res := range rep.Results {
		if res.Check != checks[i].Name() || res.Status != want[i] {
			t.Errorf("result %d: %s %s, want %s %s", i, res.Check, res.Status, checks[i].Name(), want[i])
		}
	}
	if !strings.Contains(rep.Results[2].Error, "no answer within") {
		t.Errorf("stuck check error %q does not say it timed out", rep.Results[2].Error)
	}
	if rep.Results[3].Error != "not available on this OS" {
		t.Errorf("unsupported check error %q", rep.Results[3].Error)
	}
	if rep.ExitCode() != ExitOK {
		t.Errorf("exit %d without a failure", rep.ExitCode())
	}
}

func TestReportExitAndOutput(t *testing.T) {
	rep := Run(context.Background(), []Check{
		fakeCheck{name: "good"},
		fakeCheck{name: "bad", sev: Fail, fix: "sysctl -w x=1\necho x"},
	}, time.Second)
	if rep.ExitCode() != ExitFail || !rep.Failed() {
		t.Fatalf("exit %d, want %d", rep.ExitCode(), ExitFail)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"[good] OK", "[bad] FAIL", "FAIL: bad is broken", "    fix: sysctl -w x=1\n    fix: echo x", "To fix (each once):\n  sysctl -w x=1\n  echo x\n", "TFO cannot work as configured"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text output lacks %q:\n%s", want, text.String())
		}
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Exit    int  `json:"exit"`
		Failed  bool `json:"tfo_cannot_work"`
		Results []struct {
			Check    string
			Status   string
			Findings []struct{ Severity, Message, Fix string }
		}
	}
	if err := json.Unmarshal(js.Bytes(), &got); err != nil {
		t.Fatalf("JSON: %v\n%s", err, js.String())
	}
	if got.Exit != 1 || !got.Failed || len(got.Results) != 2 || got.Results[1].Status != "fail" ||
		got.Results[1].Findings[0].Severity != "fail" || got.Results[1].Findings[0].Fix != "sysctl -w x=1\necho x" {
		t.Errorf("JSON report %+v", got)
	}
}

func TestKernelCheck(t *testing.T) {
	for _, tc := range []struct {
		release string
		status  Status
		msg     string
	}{
		{"6.18.44-fc-v769", StatusOK, ""},
		{"5.4.0-150-generic", StatusNote, "tcpi_fastopen_client_fail"},
		{"4.19.0-21-amd64", StatusWarn, "backup keys"},
		{"4.9.0", StatusFail, "TCP_FASTOPEN_CONNECT"},
		{"3.2.0", StatusFail, "no TCP Fast Open"},
	} {
		rep := Run(context.Background(), []Check{KernelCheck{Release: tc.release}}, time.Second)
		res := rep.Results[0]
		if res.Status != tc.status {
			t.Errorf("%s: status %s, want %s (%+v)", tc.release, res.Status, tc.status, res)
			continue
		}
		if tc.msg != "" && !strings.Contains(fmt.Sprint(res.Findings), tc.msg) {
			t.Errorf("%s: findings %+v lack %q", tc.release, res.Findings, tc.msg)
		}
		for _, f := range res.Findings {
			if f.Fix == "" {
				t.Errorf("%s: finding without a fix: %+v", tc.release, f)
			}
		}
	}
}

func TestParseRelease(t *testing.T) {
	for in, want := range map[string][2]int{"6.18.44-fc": {6, 18}, "5.15rc1": {5, 15}, "4.9": {4, 9}} {
		ma, mi, ok := parseRelease(in)
		if !ok || ma != want[0] || mi != want[1] {
			t.Errorf("parseRelease(%q) = %d, %d, %v", in, ma, mi, ok)
		}
	}
	for _, bad := range []string{"", "6", "x.y"} {
		if _, _, ok := parseRelease(bad); ok {
			t.Errorf("parseRelease(%q) ok", bad)
		}
	}
}

func TestDescribeTFOBits(t *testing.T) {
	got := describeTFOBits(0x403)
	for _, want := range []string{"client (0x1) on", "server (0x2) on", "client without cookie (0x4) off", "all listeners (0x400) on"} {
		if !strings.Contains(got, want) {
			t.Errorf("describeTFOBits(0x403) = %q, lacks %q", got, want)
		}
	}
	if !strings.Contains(describeTFOBits(0x1001), "other bits 0x1000") {
		t.Errorf("unknown bits not named: %q", describeTFOBits(0x1001))
	}
}

// The probe's verdicts from what the kernel said about each connection.
func TestProbeVerdict(t *testing.T) {
	a := func(o tfo.Outcome, cookie string) attempt {
		var c []byte
		if cookie != "" {
			c = []byte(cookie)
		}
		return attempt{outcome: o, hello: 300, remote: "192.0.2.1:443", rtt: 50 * time.Millisecond, cookie: c}
	}
	for _, tc := range []struct {
		name string
		atts []attempt
		sev  Severity
		msg  string
		fix  string
	}{
		{"accepted", []attempt{a(tfo.CookieRequested, "A"), a(tfo.Accepted, "A"), a(tfo.Accepted, "A")}, OK, "delivers SYN data", ""},
		{"dropped", []attempt{a(tfo.CookieRequested, "A"), a(tfo.SYNDataDropped, "A"), a(tfo.SYNDataDropped, "A")}, Fail, "drops SYNs that carry data", `"tcp": {"fast_open": false}`},
		{"no cookie", []attempt{a(tfo.CookieRequested, ""), a(tfo.CookieRequested, ""), a(tfo.CookieRequested, "")}, Fail, "never issued a TFO cookie", "sysctl -w net.ipv4.tcp_fastopen=3"},
		{"farm", []attempt{a(tfo.CookieRequested, "A"), a(tfo.DataNotAccepted, "B"), a(tfo.DataNotAccepted, "A")}, Fail, "different TFO keys", `"farm": {"secret_file"`},
		{"server off", []attempt{a(tfo.DataNotAccepted, "A"), a(tfo.DataNotAccepted, "A"), a(tfo.DataNotAccepted, "A")}, Fail, "refused SYN data with the cookie it issued", "sysctl -w net.ipv4.tcp_fastopen=3"},
		{"queue overflow", []attempt{a(tfo.Accepted, "A"), a(tfo.DataNotAccepted, "A"), a(tfo.Accepted, "A")}, Warn, "the server's TFO queue overflowed: it refused the SYN data of 1 of 3", `"fast_open_qlen": 4096`},
		{"queue overflow names the sysctl", []attempt{a(tfo.Accepted, "A"), a(tfo.DataNotAccepted, "A")}, Warn, "the path delivers SYN data", "sysctl -w net.core.somaxconn="},
		{"mixed, cookies unknown", []attempt{a(tfo.Accepted, ""), a(tfo.DataNotAccepted, ""), a(tfo.Accepted, "")}, Warn, "refused on 1", `"farm": {"secret_file"`},
	} {
		out := &Out{}
		(&ProbeCheck{Addr: "192.0.2.1:443"}).verdict(out, tc.atts)
		var found *Finding
		for i := range out.findings {
			if out.findings[i].Severity == tc.sev && strings.Contains(out.findings[i].Message, tc.msg) {
				found = &out.findings[i]
			}
		}
		if found == nil {
			t.Errorf("%s: no %s finding with %q in %+v", tc.name, tc.sev, tc.msg, out.findings)
			continue
		}
		if !strings.Contains(found.Fix, tc.fix) {
			t.Errorf("%s: fix %q lacks %q", tc.name, found.Fix, tc.fix)
		}
	}
	// A ClientHello too big for the SYN is a failure of its own, with the curves line.
	out := &Out{}
	big := a(tfo.Accepted, "A")
	big.hello = 1530
	(&ProbeCheck{Addr: "192.0.2.1:443"}).verdict(out, []attempt{big, big})
	if !strings.Contains(fmt.Sprint(out.findings), `does not fit in the SYN (1420)`) || !strings.Contains(fmt.Sprint(out.findings), `"curves": "X25519:P-256"`) {
		t.Errorf("big ClientHello findings %+v", out.findings)
	}
}

// A config that asks for a post-quantum key share first sends a ClientHello too big for the SYN.
func TestConfigCheckClientHello(t *testing.T) {
	cfg := config.Default(config.RunClient)
	cfg.RemoteAddr, cfg.RemotePort = "192.0.2.1", 443
	cfg.TCP.FastOpen = true
	cfg.SSL.Verify = false
	rep := Run(context.Background(), []Check{ConfigCheck{Config: cfg}}, 5*time.Second)
	if rep.Results[0].Status != StatusOK {
		t.Errorf("default client config with TFO: %+v", rep.Results[0])
	}
	cfg.SSL.Curves = "X25519MLKEM768:X25519"
	rep = Run(context.Background(), []Check{ConfigCheck{Config: cfg}}, 5*time.Second)
	f := rep.Findings(Fail)
	if len(f) != 1 || !strings.Contains(f[0].Message, "does not fit in the SYN") || !strings.Contains(f[0].Fix, `"ssl": {"curves": "X25519:P-256"}`) {
		t.Errorf("post-quantum first: findings %+v", rep.Results[0])
	}
	cfg.SSL.Curves = ""
	cfg.TCP.FastOpen = false
	rep = Run(context.Background(), []Check{ConfigCheck{Config: cfg}}, 5*time.Second)
	f = rep.Findings(Fail)
	if len(f) != 1 || !strings.Contains(f[0].Fix, `"tcp": {"fast_open": true}`) {
		t.Errorf("fast_open false: findings %+v", rep.Results[0])
	}
	// The leg's own switch wins over tcp.fast_open, and the fix names it.
	cfg.TCP.FastOpen = true
	off := false
	cfg.Fastrojan.TFO.Client = &off
	rep = Run(context.Background(), []Check{ConfigCheck{Config: cfg}}, 5*time.Second)
	f = rep.Findings(Fail)
	if len(f) != 1 || !strings.Contains(f[0].Fix, `"fastrojan": {"tfo": {"client": true}}`) {
		t.Errorf("fastrojan.tfo.client false: findings %+v", rep.Results[0])
	}
}
