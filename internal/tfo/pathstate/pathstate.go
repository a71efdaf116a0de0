// Package pathstate remembers, per server address, whether TCP Fast Open works on the path to it,
// so that TFO is a no-regret setting (DESIGN.md 3.5): the kernel no longer backs off by itself when a
// middlebox drops SYNs that carry data, so every such connection would wait about a second for a
// SYN retransmit.
//
// A Table holds one state per server address:
//
//   - working: connections use TFO, raced by a plain connection if the TLS handshake is late;
//   - suspect: a path that has not carried SYN data yet showed some evidence against TFO (a SYN
//     with data went unanswered, or a TFO handshake stalled), not yet more than random loss
//     explains; TFO is still tried, and raced at once;
//   - disabled: the path dropped or refused SYN data; connections go plain until a time that backs
//     off exponentially (bounded, with jitter) on each failed probe;
//   - probing: the time is up; one connection at a time tries TFO again, the others go plain. A
//     probe whose SYN data is acknowledged restores working.
//
// The caller asks Plan before each connection and tells Report what happened (the kernel's TFO
// outcome, whether a plain connection was raced and which won). "Data not accepted" alone does not
// disable TFO (the data is sent again at once, costing no round trip): it is counted.
//
// Verdicts need evidence, not one sample (DESIGN.md 3.12): at 2% random loss a TFO client loses a
// SYN (or its SYN-ACK) every 25 connections or so, and the race already bounds what that costs. A
// path is declared to drop SYN data when the TFO attempt's SYN went unanswered while a plain SYN to
// the same server got through DropsToDisable times in a row before any SYN data ever got through
// (a firewall that drops SYN data drops every one, so a blackhole is caught on the first
// connections), or DropsToDisableKnown times in a row on a path where SYN data has got through
// before (random loss at 2% does that about once in ten million windows). Attempts that overlapped
// in time count as one sample (a burst of loss hits concurrent connections together). Stalled
// handshakes (SYN answered, plain finished first) need StallsToDisable in a row. Below a verdict, a
// path that has carried SYN data stays working. A probe after a verdict needs one sample. State
// lives in memory only; Snapshot shows it, with the reason of the last change, for metrics and
// logs.
package pathstate

import (
	"cmp"
	"context"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/fastrojan/fastrojan/internal/tfo"
)

// State is the TFO state of the path to one server address.
type State uint8

// States. The zero value is Working: a server not seen yet gets TFO.
const (
	Working State = iota
	Suspect
	Disabled
	Probing
)

var stateNames = [...]string{Working: "working", Suspect: "suspect", Disabled: "disabled", Probing: "probing"}

// String is the state's name in logs and metric labels.
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// States lists every state, in order (for metrics that pre-create their series).
func States() []State { return []State{Working, Suspect, Disabled, Probing} }

// Defaults of Options.
const (
	DefaultBackoff      = time.Minute
	DefaultMaxBackoff   = time.Hour
	DefaultJitter       = 0.2
	DefaultRaceDelay    = 250 * time.Millisecond // before any RTT is known: RFC 8305's connection attempt delay
	DefaultMinMargin    = 25 * time.Millisecond
	DefaultProbeTimeout = 30 * time.Second
	DefaultNoCookie     = 3

	// LossMemory is how long after a lost TFO SYN a path gets second TFO attempts (Plan.ResendSYN).
	LossMemory = 10 * time.Minute
	// MaxResends bounds the second TFO attempts in flight per server, so that a host too busy to
	// answer in time is not sent more.
	MaxResends = 4

	// RaceAtOnce is the racing delay of a TFO attempt on a path in doubt: the plain connection
	// starts alongside at once.
	RaceAtOnce = time.Millisecond

	DefaultDropsToDisable      = 2 // before any SYN data got through: the first connections catch a blackhole
	DefaultDropsToDisableKnown = 5 // after SYN data got through: (2×2% loss)⁵ ≈ 10⁻⁷ per window
	DefaultStallsToDisable     = 6
)

// Options tune a Table. Zero values mean the defaults.
type Options struct {
	Backoff      time.Duration // first period TFO stays disabled; doubles on each failed probe; default 1m
	MaxBackoff   time.Duration // bound of the period; default 1h
	Jitter       float64       // a random fraction up to this much is taken off each period (0..1); default 0.2
	RaceDelay    time.Duration // racing delay before the server's RTT is known; default 250ms
	MinMargin    time.Duration // least slack added to an expected handshake time; default 25ms
	ProbeTimeout time.Duration // a probe that reports nothing for this long frees the probe slot; default 30s
	NoCookie     int           // cookie requests in a row after which the state says no cookie comes; default 3

	// Unanswered TFO SYNs in a row (while a plain SYN got through, or the kernel retried the SYN
	// without data) that disable TFO: DropsToDisable while no SYN data ever got through to the
	// server (default 2), DropsToDisableKnown once some did (default 5). StallsToDisable: TFO
	// handshakes in a row whose SYN was answered but that a raced plain connection beat (default 6).
	DropsToDisable, DropsToDisableKnown, StallsToDisable int

	Now    func() time.Time // clock; nil means time.Now
	Rand   func() float64   // uniform in [0, 1); nil means math/rand/v2
	Logger *slog.Logger     // one line per state change; nil means slog.Default()
}

// Table is the TFO state of every server address seen. It is safe for concurrent use.
type Table struct {
	opts Options

	mu      sync.Mutex
	servers map[string]*server
}

// server is the memory about one address.
type server struct {
	state   State
	reason  string
	since   time.Time
	until   time.Time     // disabled: TFO is tried again from then on
	backoff time.Duration // length of the next disabled period, before jitter
	probe   time.Time     // probing: when the probe in flight started; zero: none in flight

	srtt     time.Duration // smoothed tcpi_rtt of earlier connections; 0: none yet
	accepted time.Duration // smoothed dial-to-handshake time of TFO connections whose data was accepted
	last     tfo.Outcome   // last outcome the kernel reported for a TFO attempt
	noCookie int           // cookie requests in a row

	dataThrough bool      // some SYN with data to this server was answered (since the last verdict)
	drops       int       // TFO SYNs unanswered in a row while plain ones got through
	lastDrop    time.Time // when the last drop counted in drops was reported
	lastStall   time.Time // when the last stall counted in stalls was reported
	lossSeen    time.Time // when a TFO SYN last went unanswered (or needed a second attempt)
	resending   int       // second TFO attempts in flight (TryResend)
	stalls      int       // TFO handshakes in a row beaten by a raced plain connection, SYN answered

	unreachable time.Time // until then the address goes last when a name has several (Order)

	transitions [len(stateNames)]uint64
	outcomes    [tfo.Unsupported + 1]uint64
	races       uint64
	wonTFO      uint64
	wonPlain    uint64
}

// New returns an empty Table.
func New(opts Options) *Table {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.Backoff, DefaultBackoff)
	def(&opts.MaxBackoff, DefaultMaxBackoff)
	def(&opts.RaceDelay, DefaultRaceDelay)
	def(&opts.MinMargin, DefaultMinMargin)
	def(&opts.ProbeTimeout, DefaultProbeTimeout)
	opts.MaxBackoff = max(opts.MaxBackoff, opts.Backoff)
	if opts.Jitter <= 0 || opts.Jitter > 1 {
		opts.Jitter = DefaultJitter
	}
	if opts.NoCookie <= 0 {
		opts.NoCookie = DefaultNoCookie
	}
	for _, d := range []struct {
		p *int
		v int
	}{{&opts.DropsToDisable, DefaultDropsToDisable}, {&opts.DropsToDisableKnown, DefaultDropsToDisableKnown}, {&opts.StallsToDisable, DefaultStallsToDisable}} {
		if *d.p <= 0 {
			*d.p = d.v
		}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Float64
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Table{opts: opts, servers: make(map[string]*server)}
}

// Plan is what one connection to a server does.
type Plan struct {
	Server string
	// Start is when the plan was made (the attempt's start).
	Start time.Time
	// TFO: dial with TCP Fast Open. False: dial plainly and do not race.
	TFO bool
	// Probe: this is the one connection that tries TFO again after it was disabled.
	Probe bool
	// The attempt is late when its dial has not returned after RaceDial, or its TLS handshake has
	// not completed RaceHandshake after the dial returned. A late TFO attempt gets a plain connection
	// raced alongside; a late attempt on one of several addresses also starts the next address.
	RaceDial, RaceHandshake time.Duration
	// ResendSYN: a TFO attempt with a cookie whose SYN (carrying data) is still unanswered this
	// long after its dial returned gets a second TFO attempt alongside: a SYN lost at random then
	// costs about RTT/4 more than one round trip instead of the racing delay plus a plain
	// connection's extra round trip. Only on a path that lost a TFO SYN within LossMemory (a busy
	// host answering late gets no extra connections). Zero: none (no RTT known yet, no recent
	// loss, or the path is in doubt).
	ResendSYN time.Duration
}

// Plan returns what the next connection to addr does, and marks a probe as in flight when it is one.
func (t *Table) Plan(addr string) Plan {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.opts.Now()
	s := t.get(addr, now)
	p := Plan{Server: addr, Start: now}
	p.RaceDial, p.RaceHandshake = t.delays(s, false)
	switch s.state {
	case Disabled:
		if now.Before(s.until) {
			return p
		}
		t.set(addr, s, Probing, "disabled period over: one connection tries TFO again", now)
		fallthrough
	case Probing:
		if !s.probe.IsZero() && now.Sub(s.probe) < t.opts.ProbeTimeout {
			return p
		}
		s.probe = now
		p.Probe = true
	}
	p.TFO = true
	p.RaceDial, p.RaceHandshake = t.delays(s, true)
	if s.srtt > 0 && p.RaceHandshake != RaceAtOnce && s.last != tfo.DataNotAccepted &&
		!s.lossSeen.IsZero() && now.Sub(s.lossSeen) < LossMemory {
		p.ResendSYN = min(s.srtt+max(s.srtt/4, t.opts.MinMargin/2), p.RaceHandshake)
	}
	return p
}

// delays returns the racing delays for s: an expected time plus a margin of half an RTT (at least
// MinMargin). The dial is expected to take one RTT (without a cookie it waits for the SYN-ACK; with
// one it returns at once); the handshake one RTT after it, two when the server last did not accept
// the SYN data (the data is sent again after the SYN-ACK) and TFO is used.
//
// A TFO attempt whose path is in doubt (a probe after a verdict, or a path that has lost a TFO SYN
// and never carried SYN data) gets its plain connection at once: on a path that drops SYN data the
// plain one wins at about 3 RTT instead of 1.5 RTT later, and where SYN data gets through TFO still
// wins (2 RTT) and the plain one is dropped before its handshake ends.
func (t *Table) delays(s *server, viaTFO bool) (dial, handshake time.Duration) {
	if viaTFO && (s.state == Probing || s.drops > 0 && !s.dataThrough) {
		return RaceAtOnce, RaceAtOnce
	}
	if s.srtt <= 0 {
		return t.opts.RaceDelay, t.opts.RaceDelay
	}
	margin := max(s.srtt/2, t.opts.MinMargin)
	expect := s.srtt
	if viaTFO && s.last == tfo.DataNotAccepted {
		expect = 2 * s.srtt
	}
	return s.srtt + margin, max(expect+margin, s.accepted+margin/2)
}

// Winner says which connection completed its TLS handshake first.
type Winner uint8

// Winners.
const (
	NoWinner Winner = iota // both failed
	WonTFO
	WonPlain
)

// Result is what happened to one connection made after Plan.
type Result struct {
	Plan Plan
	// Outcome is the kernel's TFO outcome of the TFO attempt, read when it ended or was abandoned
	// (NotAttempted when the kernel did not know yet).
	Outcome tfo.Outcome
	// Raced: a plain connection was started alongside the TFO attempt.
	Raced  bool
	Winner Winner
	// SYNUnanswered: when the plain connection won, the TFO attempt's SYN (with data) had still had
	// no answer.
	// Resent: the TFO attempt's SYN went unanswered long enough that a second TFO attempt was made
	// (Plan.ResendSYN).
	Resent        bool
	SYNUnanswered bool
	// TFOErr: the TFO attempt failed by itself (not abandoned for the winner).
	TFOErr error
	// RTT is tcpi_rtt of the winning connection (0: unknown).
	RTT time.Duration
	// Handshake is, for a TFO winner, the time from the dial's return to the TLS handshake's end.
	Handshake time.Duration
	// Unreachable: the address is one of several for a name, another won, and no connection to
	// this one got an answer. Order puts it last for the back-off period.
	Unreachable bool
}

// Report feeds the result of a connection planned with Plan into the server's state.
func (t *Table) Report(r Result) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.opts.Now()
	addr := r.Plan.Server
	s := t.get(addr, now)
	if r.RTT > 0 {
		if s.srtt == 0 {
			s.srtt = r.RTT
		} else {
			s.srtt += (r.RTT - s.srtt) / 4
		}
	}
	switch {
	case r.Winner != NoWinner:
		s.unreachable = time.Time{}
	case r.Unreachable:
		s.unreachable = now.Add(t.opts.Backoff)
		t.opts.Logger.Debug("tfo path: address did not answer; tried last for a while", "server", addr, "until", s.unreachable.Format(time.RFC3339))
	}
	if !r.Plan.TFO {
		return
	}
	s.count(r, now)
	t.judge(addr, s, r, now)
}

// count adds a TFO connection's result to the server's counters: races and their winners,
// outcomes, the last loss seen, the streak without a cookie, the accepted handshake's average.
func (s *server) count(r Result, now time.Time) {
	if r.Plan.Probe {
		s.probe = time.Time{}
	}
	if r.Raced {
		s.races++
		switch r.Winner {
		case WonTFO:
			s.wonTFO++
		case WonPlain:
			s.wonPlain++
		}
	}
	if int(r.Outcome) < len(s.outcomes) {
		s.outcomes[r.Outcome]++
	}
	if r.Resent || r.SYNUnanswered || r.Outcome == tfo.SYNDataDropped {
		s.lossSeen = now
	}
	if r.Outcome != tfo.NotAttempted {
		s.last = r.Outcome
	}
	if r.Outcome == tfo.CookieRequested {
		s.noCookie++
	} else if r.Outcome != tfo.NotAttempted {
		s.noCookie = 0
	}
	if r.Winner == WonTFO && r.Outcome == tfo.Accepted && r.Handshake > 0 {
		if s.accepted == 0 {
			s.accepted = r.Handshake
		} else {
			s.accepted += (r.Handshake - s.accepted) / 4
		}
	}
}

// judge moves the server's state on a TFO connection's result: what the winner and the outcome say
// about the path.
func (t *Table) judge(addr string, s *server, r Result, now time.Time) {
	switch {
	case r.Outcome == tfo.SYNDataDropped:
		t.dropped(addr, s, r, "the kernel saw the SYN with data go unanswered and retried without data", now)
	case r.Winner == WonPlain && r.SYNUnanswered:
		t.dropped(addr, s, r, "the SYN with data got no answer while a plain SYN to the same server did", now)
	case r.Winner == WonPlain && r.TFOErr != nil:
		t.disable(addr, s, "the TFO connection failed ("+r.TFOErr.Error()+") while a plain one succeeded", now)
	case r.Winner == WonPlain && r.Outcome == tfo.DataNotAccepted:
		// The server answered the SYN but refused its data (full TFO queue, unknown cookie): a
		// server-side condition that costs the round trip the race already bounds, not a path fault.
		s.drops = 0
		s.dataThrough = true
	case r.Winner == WonPlain:
		t.stalled(addr, s, r, now)
	case r.Winner == WonTFO && (r.Outcome == tfo.Accepted || r.Outcome == tfo.DataNotAccepted):
		// The SYN with data was answered: the path lets it through.
		s.backoff = 0
		s.drops, s.stalls, s.dataThrough = 0, 0, true
		reason := "the server acknowledged the data in the SYN"
		if r.Outcome == tfo.DataNotAccepted {
			reason = "the SYN with data was answered (the server did not accept the data; counted, not disabling)"
		}
		if s.state != Working {
			t.set(addr, s, Working, reason, now)
		}
	case r.Winner == WonTFO && r.Outcome == tfo.CookieRequested:
		// A SYN without data got through: it says nothing about SYNs with data, so a streak of
		// unanswered ones goes on.
		s.stalls = 0
		if s.noCookie == t.opts.NoCookie && s.state == Working {
			t.set(addr, s, Working, "no TFO cookie from the server after "+strconv.Itoa(s.noCookie)+
				" connections: the path strips the TFO option or the server has TFO off; TFO costs nothing here but saves nothing", now)
		}
	}
}

// stalled takes a race a plain connection won after the SYN with data was answered but its
// handshake stalled: a middlebox, random loss, or a slow server.
func (t *Table) stalled(addr string, s *server, r Result, now time.Time) {
	s.drops = 0
	if !r.Plan.Start.IsZero() && r.Plan.Start.Before(s.lastStall) && s.state != Probing {
		return // it ran alongside the last counted stall: one sample (see dropped)
	}
	s.stalls++
	s.lastStall = now
	switch {
	case s.state == Probing:
		t.disable(addr, s, "the TFO probe's handshake stalled while a plain connection finished first", now)
	case s.stalls >= t.opts.StallsToDisable:
		t.disable(addr, s, "TFO handshakes stalled "+strconv.Itoa(s.stalls)+" times in a row while plain connections finished first", now)
	case s.state == Working && !s.dataThrough:
		t.set(addr, s, Suspect, "a TFO handshake stalled and a plain connection finished first", now)
	}
}

// dropped takes one TFO SYN that went unanswered while the path carried other SYNs: one sample is
// what random loss looks like, so it disables TFO only as the last of a streak (or on a probe,
// after an earlier verdict).
func (t *Table) dropped(addr string, s *server, r Result, what string, now time.Time) {
	s.stalls = 0
	if !r.Plan.Start.IsZero() && r.Plan.Start.Before(s.lastDrop) && s.state != Probing {
		// The attempt ran alongside the last counted one: a burst of loss (or an overloaded host)
		// that hits many concurrent connections at once is one sample, not many.
		return
	}
	s.drops++
	s.lastDrop = now
	need := t.opts.DropsToDisableKnown
	if !s.dataThrough {
		need = t.opts.DropsToDisable
	}
	switch {
	case s.state == Probing:
		t.disable(addr, s, what+" (SYN data dropped on the path; the probe confirms the earlier verdict)", now)
	case s.drops >= need:
		t.disable(addr, s, what+", "+strconv.Itoa(s.drops)+" times in a row (SYN data dropped on the path, not random loss)", now)
	case s.state == Working && !s.dataThrough:
		t.set(addr, s, Suspect, what+" (once: random loss or a firewall; TFO stays on, raced)", now)
	}
	// On a path that has carried SYN data, a lost SYN short of a streak is random loss: counted
	// (Outcomes, races), the state stays working.
}

// TryResend reserves one of the MaxResends second-TFO-attempt slots of addr; the caller releases
// it with ResendDone when that attempt ended.
func (t *Table) TryResend(addr string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.get(addr, t.opts.Now())
	if s.resending >= MaxResends {
		return false
	}
	s.resending++
	return true
}

// ResendDone releases a slot TryResend reserved.
func (t *Table) ResendDone(addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.servers[addr]; s != nil && s.resending > 0 {
		s.resending--
	}
}

// disable switches TFO off for the server for its back-off period, less a random jitter, and
// doubles the next period up to MaxBackoff.
func (t *Table) disable(addr string, s *server, reason string, now time.Time) {
	if s.state == Disabled {
		return // a late report from a connection planned before: already off
	}
	if s.backoff <= 0 {
		s.backoff = t.opts.Backoff
	}
	d := s.backoff
	d -= time.Duration(float64(d) * t.opts.Jitter * t.opts.Rand())
	s.until = now.Add(d)
	s.backoff = min(2*s.backoff, t.opts.MaxBackoff)
	s.probe = time.Time{}
	s.drops, s.stalls, s.dataThrough = 0, 0, false
	t.set(addr, s, Disabled, reason, now)
}

func (t *Table) set(addr string, s *server, to State, reason string, now time.Time) {
	from := s.state
	s.state, s.reason = to, reason
	if from != to {
		s.since = now
		s.transitions[to]++
	}
	level := slog.LevelInfo
	if to == Probing || to == Suspect {
		level = slog.LevelDebug
	}
	attrs := []any{"server", addr, "from", from.String(), "to", to.String(), "reason", reason}
	if to == Disabled {
		attrs = append(attrs, "until", s.until.Format(time.RFC3339), "for", s.until.Sub(now).Round(time.Millisecond))
	}
	t.opts.Logger.Log(context.Background(), level, "tfo path state", attrs...)
}

func (t *Table) get(addr string, now time.Time) *server {
	s := t.servers[addr]
	if s == nil {
		s = &server{since: now, reason: "no connection yet"}
		t.servers[addr] = s
	}
	return s
}

// Order returns addrs (the addresses of one server name, in the order to try them) with those that
// recently did not answer while another address did moved to the end, keeping the order otherwise.
func (t *Table) Order(addrs []string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.opts.Now()
	out := slices.Clone(addrs)
	slices.SortStableFunc(out, func(a, b string) int {
		return cmp.Compare(t.down(a, now), t.down(b, now))
	})
	return out
}

func (t *Table) down(addr string, now time.Time) int {
	if s := t.servers[addr]; s != nil && now.Before(s.unreachable) {
		return 1
	}
	return 0
}

// ServerState is a copy of the state of one server address.
type ServerState struct {
	Server string
	State  State
	Reason string    // why the state is what it is (the last change, or what the connections show)
	Since  time.Time // when the state was entered
	Until  time.Time // disabled: when TFO is tried again

	UnreachableUntil time.Time // until then the address is tried last (Order); zero: reachable

	SRTT                    time.Duration // smoothed tcpi_rtt of its connections; 0: none yet
	RaceDial, RaceHandshake time.Duration // the racing delays the next TFO connection gets

	Transitions [len(stateNames)]uint64     // entries into each State
	Outcomes    [tfo.Unsupported + 1]uint64 // kernel TFO outcomes of its TFO attempts, by tfo.Outcome
	Races       uint64                      // plain connections started alongside a TFO attempt
	RacesWonTFO uint64                      // races the TFO attempt won
	RacesPlain  uint64                      // races the plain connection won
}

// Snapshot returns the state of every server address seen, sorted by address.
func (t *Table) Snapshot() []ServerState {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]ServerState, 0, len(t.servers))
	for addr, s := range t.servers {
		out = append(out, t.copy(addr, s))
	}
	slices.SortFunc(out, func(a, b ServerState) int { return cmp.Compare(a.Server, b.Server) })
	return out
}

// Server returns the state of one server address, and false if it was never seen.
func (t *Table) Server(addr string) (ServerState, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.servers[addr]
	if !ok {
		return ServerState{Server: addr}, false
	}
	return t.copy(addr, s), true
}

func (t *Table) copy(addr string, s *server) ServerState {
	st := ServerState{
		Server: addr, State: s.state, Reason: s.reason, Since: s.since, SRTT: s.srtt,
		Transitions: s.transitions, Outcomes: s.outcomes,
		Races: s.races, RacesWonTFO: s.wonTFO, RacesPlain: s.wonPlain,
	}
	if s.state == Disabled {
		st.Until = s.until
	}
	st.RaceDial, st.RaceHandshake = t.delays(s, s.state == Working || s.state == Suspect)
	if now := t.opts.Now(); now.Before(s.unreachable) {
		st.UnreachableUntil = s.unreachable
	}
	return st
}
