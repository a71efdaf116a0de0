package pathstate

import (
	"bytes"
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/tfo"
)

const addr = "192.0.2.1:443"

// clock is a settable clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTable(t *testing.T, opts Options) (*Table, *clock, *bytes.Buffer) {
	t.Helper()
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var logs bytes.Buffer
	opts.Now = c.now
	if opts.Rand == nil {
		opts.Rand = func() float64 { return 0 }
	}
	opts.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return New(opts), c, &logs
}

// Results a connection can have.
var (
	accepted    = Result{Outcome: tfo.Accepted, Winner: WonTFO, RTT: 50 * time.Millisecond, Handshake: 51 * time.Millisecond}
	cookieReq   = Result{Outcome: tfo.CookieRequested, Winner: WonTFO, RTT: 50 * time.Millisecond}
	notAccepted = Result{Outcome: tfo.DataNotAccepted, Winner: WonTFO, RTT: 50 * time.Millisecond}
	kernelDrop  = Result{Outcome: tfo.SYNDataDropped, Winner: WonTFO, RTT: 50 * time.Millisecond}
	raceSYNLost = Result{Raced: true, Winner: WonPlain, SYNUnanswered: true, RTT: 50 * time.Millisecond}
	raceStall   = Result{Raced: true, Winner: WonPlain, RTT: 50 * time.Millisecond}
	raceTFOWon  = Result{Outcome: tfo.Accepted, Raced: true, Winner: WonTFO, RTT: 50 * time.Millisecond}
	tfoRefused  = Result{Raced: true, Winner: WonPlain, TFOErr: errors.New("connection reset by peer"), RTT: 50 * time.Millisecond}
	bothFailed  = Result{Raced: true, Winner: NoWinner, TFOErr: errors.New("timeout")}
)

// Table test of transitions: each step plans a connection, checks the plan, reports a result and
// checks the state it leads to.
func TestTransitions(t *testing.T) {
	type step struct {
		wait      time.Duration // clock advance before planning
		wantTFO   bool
		wantProbe bool
		result    Result
		want      State
		reason    string // substring of the reason
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"healthy stays working", []step{
			{wantTFO: true, result: cookieReq, want: Working},
			{wantTFO: true, result: accepted, want: Working},
			{wantTFO: true, result: raceTFOWon, want: Working},
		}},
		{"data not accepted alone does not disable", []step{
			{wantTFO: true, result: notAccepted, want: Working},
			{wantTFO: true, result: notAccepted, want: Working},
			{wantTFO: true, result: notAccepted, want: Working},
		}},
		{"kernel-reported drops disable after a streak", []step{
			{wantTFO: true, result: kernelDrop, want: Suspect, reason: "once: random loss"},
			{wantTFO: true, result: kernelDrop, want: Disabled, reason: "2 times in a row (SYN data dropped"},
			{wantTFO: false, result: Result{Winner: WonPlain}, want: Disabled},
		}},
		{"raced SYNs left unanswered on a fresh path disable on the second", []step{
			{wantTFO: true, result: cookieReq, want: Working},
			{wantTFO: true, result: raceSYNLost, want: Suspect, reason: "got no answer while a plain SYN"},
			{wantTFO: true, result: raceSYNLost, want: Disabled, reason: "got no answer while a plain SYN to the same server did, 2 times in a row"},
		}},
		{"once SYN data got through, one lost SYN is random loss: the state stays working", []step{
			{wantTFO: true, result: accepted, want: Working},
			{wantTFO: true, result: raceSYNLost, want: Working},
			{wantTFO: true, result: accepted, want: Working},
			{wantTFO: true, result: kernelDrop, want: Working},
			{wantTFO: true, result: raceSYNLost, want: Working},
			{wantTFO: true, result: raceStall, want: Working},
			{wantTFO: true, result: raceSYNLost, want: Working},
			{wantTFO: true, result: accepted, want: Working},
		}},
		{"once SYN data got through, a streak of 5 still disables", []step{
			{wantTFO: true, result: accepted, want: Working},
			{wantTFO: true, result: raceSYNLost, want: Working},
			{wantTFO: true, result: raceSYNLost, want: Working},
			{wantTFO: true, result: kernelDrop, want: Working},
			{wantTFO: true, result: raceSYNLost, want: Working},
			{wantTFO: true, result: raceSYNLost, want: Disabled, reason: "5 times in a row"},
		}},
		{"queue refusals (data not accepted, handshake fine) never count against the path", []step{
			{wantTFO: true, result: raceSYNLost, want: Suspect},
			{wantTFO: true, result: Result{Outcome: tfo.DataNotAccepted, Raced: true, Winner: WonPlain, RTT: 50 * time.Millisecond}, want: Suspect},
			{wantTFO: true, result: raceSYNLost, want: Suspect},
			{wantTFO: true, result: notAccepted, want: Working},
			{wantTFO: true, result: notAccepted, want: Working},
		}},
		{"TFO refused while plain works disables", []step{
			{wantTFO: true, result: tfoRefused, want: Disabled, reason: "connection reset by peer"},
		}},
		{"an ambiguous stall is suspect, six in a row disable", []step{
			{wantTFO: true, result: raceStall, want: Suspect, reason: "stalled"},
			{wantTFO: true, result: raceStall, want: Suspect},
			{wantTFO: true, result: raceStall, want: Suspect},
			{wantTFO: true, result: raceStall, want: Suspect},
			{wantTFO: true, result: raceStall, want: Suspect},
			{wantTFO: true, result: raceStall, want: Disabled, reason: "stalled 6 times in a row"},
		}},
		{"suspect recovers on accepted data", []step{
			{wantTFO: true, result: raceStall, want: Suspect},
			{wantTFO: true, result: accepted, want: Working, reason: "acknowledged the data"},
		}},
		{"both failing changes nothing", []step{
			{wantTFO: true, result: bothFailed, want: Working},
		}},
		{"probe after the back-off, success restores", []step{
			{wantTFO: true, result: raceSYNLost, want: Suspect},
			{wantTFO: true, result: raceSYNLost, want: Disabled},
			{wait: 59 * time.Second, wantTFO: false, result: Result{Winner: WonPlain}, want: Disabled},
			{wait: time.Second, wantTFO: true, wantProbe: true, result: accepted, want: Working, reason: "acknowledged"},
			{wantTFO: true, result: accepted, want: Working},
		}},
		{"failed probe doubles the back-off", []step{
			{wantTFO: true, result: raceSYNLost, want: Suspect},
			{wantTFO: true, result: raceSYNLost, want: Disabled},
			{wait: time.Minute, wantTFO: true, wantProbe: true, result: raceSYNLost, want: Disabled},
			{wait: time.Minute, wantTFO: false, result: Result{Winner: WonPlain}, want: Disabled},
			{wait: time.Minute, wantTFO: true, wantProbe: true, result: raceSYNLost, want: Disabled},
			{wait: 4*time.Minute - time.Second, wantTFO: false, result: Result{Winner: WonPlain}, want: Disabled},
			{wait: time.Second, wantTFO: true, wantProbe: true, result: notAccepted, want: Working, reason: "was answered"},
		}},
		{"a cookie request during a probe proves nothing: the next connection probes", []step{
			{wantTFO: true, result: raceSYNLost, want: Suspect},
			{wantTFO: true, result: raceSYNLost, want: Disabled},
			{wait: time.Minute, wantTFO: true, wantProbe: true, result: cookieReq, want: Probing},
			{wantTFO: true, wantProbe: true, result: accepted, want: Working},
		}},
		{"strip-tfo: no cookie ever, working, says why", []step{
			{wantTFO: true, result: cookieReq, want: Working},
			{wantTFO: true, result: cookieReq, want: Working},
			{wantTFO: true, result: cookieReq, want: Working, reason: "no TFO cookie from the server after 3 connections"},
			{wantTFO: true, result: cookieReq, want: Working, reason: "no TFO cookie"},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tb, clk, logs := newTable(t, Options{})
			for i, s := range c.steps {
				clk.advance(s.wait)
				p := tb.Plan(addr)
				if p.TFO != s.wantTFO || p.Probe != s.wantProbe {
					t.Fatalf("step %d: plan TFO %v probe %v, want %v %v", i, p.TFO, p.Probe, s.wantTFO, s.wantProbe)
				}
				if p.RaceDial <= 0 || p.RaceHandshake <= 0 {
					t.Fatalf("step %d: plan %+v without racing delays", i, p)
				}
				r := s.result
				r.Plan = p
				if !p.TFO {
					r.Outcome, r.Raced, r.SYNUnanswered, r.TFOErr = tfo.NotAttempted, false, false, nil
				}
				tb.Report(r)
				st, _ := tb.Server(addr)
				if st.State != s.want || !strings.Contains(st.Reason, s.reason) {
					t.Fatalf("step %d: state %s (%q), want %s with reason containing %q\nlog:\n%s", i, st.State, st.Reason, s.want, s.reason, logs)
				}
			}
		})
	}
}

// While a probe is in flight every other connection goes plain; a probe that never reports frees
// the slot after ProbeTimeout.
func TestOneProbeAtATime(t *testing.T) {
	tb, clk, _ := newTable(t, Options{Backoff: time.Second, ProbeTimeout: 10 * time.Second, DropsToDisable: 1})
	tb.Report(Result{Plan: tb.Plan(addr), Raced: true, Winner: WonPlain, SYNUnanswered: true})
	clk.advance(time.Second)
	if p := tb.Plan(addr); !p.Probe || !p.TFO {
		t.Fatalf("first plan after the back-off: %+v, want a probe", p)
	}
	for range 5 {
		if p := tb.Plan(addr); p.TFO || p.Probe {
			t.Fatalf("plan while a probe is in flight: %+v, want plain", p)
		}
	}
	clk.advance(10 * time.Second)
	if p := tb.Plan(addr); !p.Probe {
		t.Fatalf("plan after the probe timed out: %+v, want a new probe", p)
	}
}

// The back-off doubles up to MaxBackoff and the jitter only ever shortens it, by at most Jitter.
func TestBackoffBoundsAndJitter(t *testing.T) {
	for _, rnd := range []float64{0, 0.5, 0.999} {
		tb, clk, _ := newTable(t, Options{Backoff: time.Second, MaxBackoff: 8 * time.Second, Jitter: 0.2, Rand: func() float64 { return rnd }, DropsToDisable: 1})
		want := []time.Duration{1, 2, 4, 8, 8, 8}
		for i, w := range want {
			p := tb.Plan(addr)
			if !p.TFO {
				t.Fatalf("rand %v round %d: plan %+v, want TFO (a probe)", rnd, i, p)
			}
			tb.Report(Result{Plan: p, Raced: true, Winner: WonPlain, SYNUnanswered: true})
			st, _ := tb.Server(addr)
			got := st.Until.Sub(clk.t)
			hi := w * time.Second
			lo := hi - time.Duration(0.2*float64(hi))
			if got > hi || got < lo {
				t.Errorf("rand %v round %d: disabled for %v, want within [%v, %v]", rnd, i, got, lo, hi)
			}
			clk.advance(got)
		}
	}
}

// The racing delays follow the server's RTT: before any, the default; then RTT plus half an RTT,
// with one more RTT for the handshake when the server last did not accept the SYN data.
func TestRaceDelays(t *testing.T) {
	tb, _, _ := newTable(t, Options{MinMargin: 10 * time.Millisecond})
	p := tb.Plan(addr)
	if p.RaceDial != DefaultRaceDelay || p.RaceHandshake != DefaultRaceDelay {
		t.Errorf("before any RTT: %v/%v, want %v", p.RaceDial, p.RaceHandshake, DefaultRaceDelay)
	}
	tb.Report(Result{Plan: p, Outcome: tfo.CookieRequested, Winner: WonTFO, RTT: 40 * time.Millisecond})
	p = tb.Plan(addr)
	if p.RaceDial != 60*time.Millisecond || p.RaceHandshake != 60*time.Millisecond {
		t.Errorf("RTT 40ms: %v/%v, want 60ms/60ms", p.RaceDial, p.RaceHandshake)
	}
	tb.Report(Result{Plan: p, Outcome: tfo.DataNotAccepted, Winner: WonTFO, RTT: 40 * time.Millisecond})
	if p = tb.Plan(addr); p.RaceHandshake != 100*time.Millisecond {
		t.Errorf("after data not accepted: handshake delay %v, want 100ms", p.RaceHandshake)
	}
	// A tiny RTT still leaves MinMargin of slack; a slow server's measured handshakes widen it.
	tb2, _, _ := newTable(t, Options{MinMargin: 10 * time.Millisecond})
	tb2.Report(Result{Plan: tb2.Plan(addr), Outcome: tfo.Accepted, Winner: WonTFO, RTT: time.Millisecond, Handshake: 30 * time.Millisecond})
	if p = tb2.Plan(addr); p.RaceDial != 11*time.Millisecond || p.RaceHandshake != 35*time.Millisecond {
		t.Errorf("RTT 1ms, handshakes of 30ms: %v/%v, want 11ms/35ms", p.RaceDial, p.RaceHandshake)
	}
}

// Each state change is one log line with the reason; disabling says until when.
func TestLogsOneLinePerChange(t *testing.T) {
	tb, clk, logs := newTable(t, Options{Backoff: time.Second, DropsToDisableKnown: 1, DropsToDisable: 1})
	tb.Report(Result{Plan: tb.Plan(addr), Outcome: tfo.Accepted, Winner: WonTFO})
	if logs.Len() != 0 {
		t.Fatalf("logged without a change:\n%s", logs)
	}
	tb.Report(Result{Plan: tb.Plan(addr), Raced: true, Winner: WonPlain, SYNUnanswered: true})
	clk.advance(time.Second)
	tb.Report(Result{Plan: tb.Plan(addr), Outcome: tfo.Accepted, Winner: WonTFO})
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	want := []string{
		`level=INFO msg="tfo path state" server=192.0.2.1:443 from=working to=disabled reason="the SYN with data got no answer`,
		`level=DEBUG msg="tfo path state" server=192.0.2.1:443 from=disabled to=probing reason=`,
		`level=INFO msg="tfo path state" server=192.0.2.1:443 from=probing to=working reason="the server acknowledged the data in the SYN"`,
	}
	if len(lines) != len(want) {
		t.Fatalf("%d log lines, want %d:\n%s", len(lines), len(want), logs)
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d: %s\nwant it to contain %s", i, lines[i], w)
		}
	}
	if !strings.Contains(lines[0], "until=") {
		t.Errorf("disabling does not say until when: %s", lines[0])
	}
}

// Servers are independent, and Snapshot counts races and outcomes per server.
func TestPerServerAndCounts(t *testing.T) {
	tb, _, _ := newTable(t, Options{DropsToDisable: 1})
	other := "[2001:db8::1]:443"
	tb.Report(Result{Plan: tb.Plan(addr), Raced: true, Winner: WonPlain, SYNUnanswered: true})
	tb.Report(Result{Plan: tb.Plan(other), Outcome: tfo.Accepted, Raced: true, Winner: WonTFO})
	tb.Report(Result{Plan: tb.Plan(other), Outcome: tfo.DataNotAccepted, Winner: WonTFO})
	snap := tb.Snapshot()
	if len(snap) != 2 || snap[0].Server != addr || snap[1].Server != other {
		t.Fatalf("snapshot %+v", snap)
	}
	a, o := snap[0], snap[1]
	if a.State != Disabled || o.State != Working {
		t.Errorf("states %s, %s; want disabled, working", a.State, o.State)
	}
	if a.Races != 1 || a.RacesPlain != 1 || o.Races != 1 || o.RacesWonTFO != 1 {
		t.Errorf("races %+v / %+v", a, o)
	}
	if o.Outcomes[tfo.DataNotAccepted] != 1 || o.Outcomes[tfo.Accepted] != 1 {
		t.Errorf("outcome counts %v", o.Outcomes)
	}
	if _, ok := tb.Server("198.51.100.1:443"); ok {
		t.Error("an address never seen reports ok")
	}
}

// An address of a name that did not answer while another did goes last for the back-off period;
// an answer makes it normal again at once.
func TestOrderPutsUnreachableLast(t *testing.T) {
	tb, clk, _ := newTable(t, Options{Backoff: time.Minute})
	a, b, c := "192.0.2.1:443", "192.0.2.2:443", "[2001:db8::1]:443"
	tb.Report(Result{Plan: tb.Plan(a), Winner: NoWinner, Raced: true, SYNUnanswered: true, Unreachable: true})
	tb.Report(Result{Plan: tb.Plan(b), Outcome: tfo.Accepted, Winner: WonTFO})
	if got := tb.Order([]string{a, b, c}); !slices.Equal(got, []string{b, c, a}) {
		t.Errorf("order %v, want %v", got, []string{b, c, a})
	}
	if st, _ := tb.Server(a); st.State != Working || st.UnreachableUntil.IsZero() {
		t.Errorf("unreachable address: state %s until %v; want TFO state untouched, marked unreachable", st.State, st.UnreachableUntil)
	}
	clk.advance(time.Minute)
	if got := tb.Order([]string{a, b, c}); !slices.Equal(got, []string{a, b, c}) {
		t.Errorf("after the back-off: order %v, want the given one", got)
	}
	tb.Report(Result{Plan: tb.Plan(a), Winner: NoWinner, Unreachable: true})
	tb.Report(Result{Plan: tb.Plan(a), Winner: WonPlain})
	if got := tb.Order([]string{a, b}); !slices.Equal(got, []string{a, b}) {
		t.Errorf("after an answer: order %v, want %v", got, []string{a, b})
	}
}

// Random loss is not a blackhole (DESIGN.md 3.12): on simulated paths that lose each packet with
// probability loss in each direction (a TFO attempt's SYN or SYN-ACK is lost with about 2·loss, a
// handshake stalls behind a lost data packet with about 3·loss), 200 connections rarely end
// disabled; a path that drops every SYN with data, with the same loss on top, is disabled within
// its first 3 connections every time. The random source is seeded: the test is deterministic.
func TestLossIsNotABlackhole(t *testing.T) {
	for _, loss := range []float64{0.01, 0.02, 0.05} {
		rng := rand.New(rand.NewPCG(1, uint64(loss*1000)))
		const runs, conns = 2000, 200
		falseVerdicts, slowDetections := 0, 0
		for range runs {
			tb, _, _ := newTable(t, Options{})
			tb.opts.Logger = slog.New(slog.DiscardHandler)
			cookie := false
			for range conns {
				p := tb.Plan(addr)
				r := Result{Plan: p, Winner: WonTFO, Outcome: tfo.Accepted, RTT: 50 * time.Millisecond}
				switch x := rng.Float64(); {
				case x < 2*loss:
					r = Result{Plan: p, Raced: true, Winner: WonPlain, SYNUnanswered: true}
				case x < 5*loss:
					r = Result{Plan: p, Raced: true, Winner: WonPlain, Outcome: tfo.Accepted}
				case !cookie:
					r.Outcome, cookie = tfo.CookieRequested, true
				}
				if !p.TFO {
					r = Result{Plan: p, Winner: WonPlain}
				}
				tb.Report(r)
			}
			if st, _ := tb.Server(addr); st.Transitions[Disabled] > 0 {
				falseVerdicts++
			}

			// The same loss on a path that drops every SYN with data.
			tb, _, _ = newTable(t, Options{})
			tb.opts.Logger = slog.New(slog.DiscardHandler)
			cookie = false
			detected := false
			for range 3 {
				p := tb.Plan(addr)
				r := Result{Plan: p, Raced: true, Winner: WonPlain, SYNUnanswered: true}
				if !cookie && rng.Float64() >= 2*loss {
					r = Result{Plan: p, Winner: WonTFO, Outcome: tfo.CookieRequested, RTT: 50 * time.Millisecond}
					cookie = true
				}
				tb.Report(r)
				if st, _ := tb.Server(addr); st.State == Disabled {
					detected = true
					break
				}
			}
			if !detected {
				slowDetections++
			}
		}
		rate := float64(falseVerdicts) / runs
		t.Logf("loss %.0f%% each way: %d of %d runs of %d connections disabled TFO (%.2f%%); blackhole missed in the first 3: %d",
			100*loss, falseVerdicts, runs, conns, 100*rate, slowDetections)
		if limit := map[float64]float64{0.01: 0.003, 0.02: 0.01, 0.05: 0.05}[loss]; rate > limit {
			t.Errorf("loss %.0f%%: %.2f%% of runs disabled TFO, want at most %.1f%%", 100*loss, 100*rate, 100*limit)
		}
		if slowDetections > 0 {
			t.Errorf("loss %.0f%%: a blackhole went undetected in the first 3 connections %d times", 100*loss, slowDetections)
		}
	}
}

// A path in doubt races at once: after a first lost TFO SYN on a fresh path, and on a probe; a path
// that has carried SYN data keeps its RTT-based delays after a lost SYN.
func TestRaceAtOnceWhenInDoubt(t *testing.T) {
	tb, clk, _ := newTable(t, Options{Backoff: time.Second})
	tb.Report(Result{Plan: tb.Plan(addr), Outcome: tfo.CookieRequested, Winner: WonTFO, RTT: 40 * time.Millisecond})
	tb.Report(Result{Plan: tb.Plan(addr), Raced: true, Winner: WonPlain, SYNUnanswered: true})
	if p := tb.Plan(addr); p.RaceDial != RaceAtOnce || p.RaceHandshake != RaceAtOnce {
		t.Errorf("after a lost SYN on a fresh path: %v/%v, want at once", p.RaceDial, p.RaceHandshake)
	}
	tb.Report(Result{Plan: tb.Plan(addr), Raced: true, Winner: WonPlain, SYNUnanswered: true})
	clk.advance(time.Second)
	if p := tb.Plan(addr); !p.Probe || p.RaceDial != RaceAtOnce {
		t.Errorf("probe: %+v, want raced at once", p)
	}

	tb2, _, _ := newTable(t, Options{})
	tb2.Report(Result{Plan: tb2.Plan(addr), Outcome: tfo.Accepted, Winner: WonTFO, RTT: 40 * time.Millisecond, Handshake: 41 * time.Millisecond})
	tb2.Report(Result{Plan: tb2.Plan(addr), Raced: true, Winner: WonPlain, SYNUnanswered: true})
	if p := tb2.Plan(addr); p.RaceDial < 40*time.Millisecond {
		t.Errorf("after a lost SYN on a path that carried SYN data: %v, want the RTT-based delay", p.RaceDial)
	}
}

// Concurrent attempts that lose their SYNs together (a burst of loss, an overloaded host) are one
// sample: five of them in a row do not disable a path that has carried SYN data; five that did not
// overlap in time do.
func TestOverlappingDropsCountOnce(t *testing.T) {
	tb, clk, _ := newTable(t, Options{})
	tb.Report(Result{Plan: tb.Plan(addr), Outcome: tfo.Accepted, Winner: WonTFO, RTT: 40 * time.Millisecond})
	var plans []Plan
	for range 8 {
		plans = append(plans, tb.Plan(addr))
	}
	clk.advance(200 * time.Millisecond)
	for _, p := range plans {
		tb.Report(Result{Plan: p, Raced: true, Winner: WonPlain, SYNUnanswered: true})
	}
	if st, _ := tb.Server(addr); st.State != Working {
		t.Fatalf("8 concurrent drops: state %s (%q), want working", st.State, st.Reason)
	}
	for range 4 {
		p := tb.Plan(addr)
		clk.advance(200 * time.Millisecond)
		tb.Report(Result{Plan: p, Raced: true, Winner: WonPlain, SYNUnanswered: true})
	}
	if st, _ := tb.Server(addr); st.State != Disabled {
		t.Fatalf("then 4 sequential drops (5 samples): state %s, want disabled", st.State)
	}
}

// Second TFO attempts are planned only on a path that recently lost a TFO SYN: a busy host that
// answers late gets no extra connections.
func TestResendSYNOnlyAfterLoss(t *testing.T) {
	tb, clk, _ := newTable(t, Options{})
	tb.Report(Result{Plan: tb.Plan(addr), Outcome: tfo.Accepted, Winner: WonTFO, RTT: 40 * time.Millisecond, Handshake: 41 * time.Millisecond})
	if p := tb.Plan(addr); p.ResendSYN != 0 {
		t.Errorf("no loss seen: ResendSYN %v, want none", p.ResendSYN)
	}
	tb.Report(Result{Plan: tb.Plan(addr), Raced: true, Winner: WonPlain, SYNUnanswered: true, RTT: 40 * time.Millisecond})
	p := tb.Plan(addr)
	if p.ResendSYN < 40*time.Millisecond || p.ResendSYN > p.RaceHandshake {
		t.Errorf("after a lost SYN: ResendSYN %v (race %v), want RTT + a quarter", p.ResendSYN, p.RaceHandshake)
	}
	clk.advance(LossMemory)
	if p := tb.Plan(addr); p.ResendSYN != 0 {
		t.Errorf("LossMemory after the loss: ResendSYN %v, want none", p.ResendSYN)
	}
}
