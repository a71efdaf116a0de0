package bench

import (
	"context"
	"io"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/netlab"
)

func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		_, _ = netlab.SweepStale()
	}
	os.Exit(m.Run())
}

func startLab(t *testing.T, rtt time.Duration, fault string) *Lab {
	t.Helper()
	p := netlab.NewPath(t, netlab.PathOptions{RTT: rtt})
	lab, err := StartLab(p, fault, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("lab close: %v", err)
		}
	})
	return lab
}

// A bench run in the lab: the report has both modes with every connection accounted for, TFO
// connections are accepted by the kernel's account, and TFO is about one RTT faster.
func TestLabBench(t *testing.T) {
	const rtt, n = 30 * time.Millisecond, 12
	lab := startLab(t, rtt, "")
	opts := lab.Options()
	opts.N = n
	var calls, last int
	opts.Progress = func(done, total int) { calls++; last = done; _ = total }
	rep, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	rep.Lab = lab.Info()
	var b writerString
	_ = rep.WriteText(&b)
	t.Logf("\n%s", b)
	if calls != 2*n || last != 2*n {
		t.Errorf("progress called %d times, last %d; want %d", calls, last, 2*n)
	}
	if len(rep.Modes) != 2 || rep.Modes[0].Mode != ModeTFO || rep.Modes[1].Mode != ModePlain || len(rep.Samples) != 2*n {
		t.Fatalf("report shape: %d modes, %d samples", len(rep.Modes), len(rep.Samples))
	}
	// Interleaved: sample i is TFO for even i.
	for i, s := range rep.Samples {
		if want := []string{ModeTFO, ModePlain}[i%2]; s.Seq != i || s.Mode != want {
			t.Fatalf("sample %d: seq %d mode %s, want %s", i, s.Seq, s.Mode, want)
		}
	}
	tfoStats, plain := rep.Mode(ModeTFO), rep.Mode(ModePlain)
	if tfoStats.Successes != n || plain.Successes != n {
		t.Fatalf("successes: tfo %d plain %d of %d; errors %v %v", tfoStats.Successes, plain.Successes, n, tfoStats.Errors, plain.Errors)
	}
	if tfoStats.Outcomes["accepted"] != n {
		t.Errorf("TFO outcomes %v: want %d accepted (the warm-up cached the cookie)", tfoStats.Outcomes, n)
	}
	if plain.Outcomes["not_attempted"] != n {
		t.Errorf("plain outcomes %v", plain.Outcomes)
	}
	if rep.RTT < rtt*9/10 || rep.RTT > rtt*3/2 {
		t.Errorf("kernel RTT %v, emulated %v", rep.RTT, rtt)
	}
	// New connection, TLS 1.3, HTTP: plain needs 3 RTT, TFO 2. Generous margins for a busy machine.
	if rep.SavingRTTs < 0.5 || rep.SavingRTTs > 1.5 {
		t.Errorf("saving %.2f RTT, want about 1", rep.SavingRTTs)
	}
	if tfoStats.TTFBRTTs < 1.8 || tfoStats.TTFBRTTs > 2.8 {
		t.Errorf("TFO median TTFB %.2f RTT, want about 2", tfoStats.TTFBRTTs)
	}
	for _, s := range rep.Samples {
		if s.Hello == 0 || s.Hello > 1420 {
			t.Errorf("sample %d: ClientHello %d bytes", s.Seq, s.Hello)
		}
	}
}

// Keep-alive mode with concurrency: several requests per connection, several connections at once.
func TestLabBenchConcurrentKeepAlive(t *testing.T) {
	lab := startLab(t, 10*time.Millisecond, "")
	opts := lab.Options()
	opts.N, opts.Concurrency, opts.RequestsPerConn = 20, 8, 3
	rep, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range rep.Modes {
		if m.Successes != 20 {
			t.Errorf("%s: %d/20 ok, errors %v", m.Mode, m.Successes, m.Errors)
		}
	}
	if rep.RequestsPerSecond <= 0 {
		t.Errorf("%.1f requests/s", rep.RequestsPerSecond)
	}
	for _, s := range rep.Samples {
		if s.OK && s.Total < s.TTFB+2*10*time.Millisecond*9/10 {
			t.Errorf("sample %d: total %v for 3 requests but TTFB %v: the later requests took no round trip", s.Seq, s.Total, s.TTFB)
		}
	}
}

// A middlebox that drops SYNs with data. Without the client's per-server TFO memory (Paths) the TFO
// mode shows it in its outcomes and its times (a SYN retransmit each time); with it, as the lab
// runs by default, TFO mode goes plain after the first drop and is no slower than plain.
func TestLabBenchDropSYNData(t *testing.T) {
	lab := startLab(t, 10*time.Millisecond, FaultDropSYNData)
	opts := lab.Options()
	opts.N, opts.Warmup, opts.Paths = 2, 1, nil
	rep, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	tfoStats := rep.Mode(ModeTFO)
	if tfoStats.Outcomes["syn_data_dropped"] == 0 || tfoStats.Outcomes["accepted"] != 0 {
		t.Errorf("TFO outcomes under drop-syn-data: %v", tfoStats.Outcomes)
	}
	if rep.Saving >= 0 {
		t.Errorf("TFO not slower under drop-syn-data: saving %v", rep.Saving)
	}

	opts = lab.Options()
	opts.N, opts.Warmup = 6, 2
	rep, err = Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	tfoStats = rep.Mode(ModeTFO)
	if tfoStats.Outcomes["syn_data_dropped"] != 0 || tfoStats.Outcomes["accepted"] != 0 || tfoStats.Successes != 6 {
		t.Errorf("TFO outcomes under drop-syn-data with path memory: %v, %d/6 ok; want plain connections", tfoStats.Outcomes, tfoStats.Successes)
	}
	if rep.Saving < -5*time.Millisecond {
		t.Errorf("with path memory TFO mode is slower than plain under drop-syn-data: saving %v", rep.Saving)
	}
}

type writerString struct{ b []byte }

func (w *writerString) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }
func (w writerString) String() string               { return string(w.b) }

// The lab's server has the TLS a server with the measured config has: with the default config
// (reuse_session on) a client's second connection resumes its session, with reuse_session off it
// does not. A lab server that never resumed would make every cold connection look dearer than it is.
func TestLabServerResumesAsConfigured(t *testing.T) {
	for _, reuse := range []bool{true, false} {
		p := netlab.NewPath(t, netlab.PathOptions{RTT: 2 * time.Millisecond})
		ssl := config.Default(config.RunServer).SSL
		ssl.ReuseSession = reuse
		lab, err := StartLabWith(p, LabOptions{SSL: &ssl}, nil)
		if err != nil {
			t.Fatal(err)
		}
		tgt, err := parseTarget(lab.url)
		if err != nil {
			t.Fatal(err)
		}
		var resumed []bool
		for range 3 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			c, err := lab.out.Connect(ctx, tgt.dest, tgt.request(true))
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadAll(c); err != nil { // the answer, and the server's session ticket
				t.Fatal(err)
			}
			resumed = append(resumed, c.ConnectionState().DidResume)
			c.Close()
		}
		if err := lab.Close(); err != nil {
			t.Error(err)
		}
		want := []bool{false, reuse, reuse}
		if !slices.Equal(resumed, want) {
			t.Errorf("reuse_session %v: resumed %v, want %v", reuse, resumed, want)
		}
	}
}
