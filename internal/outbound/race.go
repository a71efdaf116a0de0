package outbound

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/fastrojan/fastrojan/internal/tfo"
	"github.com/fastrojan/fastrojan/internal/tfo/pathstate"
)

// attempt is one TCP connection plus TLS handshake to one server address. In a race it runs in its
// own goroutine, which sends an event when the dial returned a connection and one when the attempt
// ended, and touches the attempt no more after the last.
type attempt struct {
	target  *target
	viaTFO  bool
	cancel  context.CancelFunc
	start   time.Time
	dialEnd time.Time   // set before the dialed event
	fw      *flightConn // the connection below TLS; set before the dialed event (nil if the dial failed)
	end     time.Time   // set before the done event
	conn    *tls.Conn   // set on success, before the done event
	err     error       // set on failure, before the done event

	// Seen by the racer: it reads the fields above only after the matching event.
	seenDial, seenDone bool
}

type event struct {
	a    *attempt
	done bool // false: the dial returned a connection
}

// target is one server address being tried: a TFO or plain attempt as its state plans, plus a
// plain attempt raced alongside a late TFO one.
type target struct {
	plan         pathstate.Plan
	tfoA, plainA *attempt
	// tfo2A is a second TFO attempt raced with the plain one when the first one's SYN (which
	// carried data) is still unanswered: a SYN lost at random costs about 1.25 RTT, not the 3 RTT
	// of a plain connection, and its answer shows whether SYN data gets through now.
	tfo2A     *attempt
	running   int
	late      time.Time // when the address counts as late
	lateFired bool
	resend    time.Time // when an unanswered SYN with data gets a second TFO attempt (zero: none)
	tfoErr    error
}

// firstAttempt is the attempt the address's plan started with.
func (tg *target) firstAttempt() *attempt {
	if tg.plan.TFO {
		return tg.tfoA
	}
	return tg.plainA
}

// racer is one Handshake with per-server TFO memory (Trojan.Paths). Each address is dialed with TFO
// or plainly as its state says. A TFO attempt whose dial or TLS handshake is late (by delays derived
// from the address's measured RTT) gets a plain connection raced alongside; an address whose attempt
// is late also starts the next address of the name, in the spirit of RFC 8305 but judged by TLS
// handshake completion, since a TFO connect "succeeds" at once. The first connection to complete
// its handshake is kept; the others are closed before their handshakes complete, which the server
// sheds as failed handshakes. What each address showed goes back into its state.
//
// One goroutine (the caller of Handshake) runs the racer; the attempts report to it on events.
type racer struct {
	t       *Trojan
	ctx     context.Context
	timeout time.Duration
	addrs   []string
	events  chan event // room for every event of every attempt, so attempts never block

	targets    []*target
	running    int  // attempts whose done event has not been handled
	decided    bool // a winner is chosen, or all failed: nothing new starts
	winner     *attempt
	lastFailed *attempt
}

// handshakeRaced runs a racer over the addresses of t.Server.
func (t *Trojan) handshakeRaced(ctx context.Context, timeout time.Duration) (*tls.Conn, error) {
	start := time.Now()
	addrs, err := t.serverAddrs(ctx)
	if err != nil {
		return t.finish(start, &attempt{err: err}, false)
	}
	r := &racer{t: t, ctx: ctx, timeout: timeout, addrs: addrs, events: make(chan event, 2*3*len(addrs))}
	r.startNext()
	r.run()
	for _, res := range r.settle() {
		t.Paths.Report(res)
	}
	if r.winner == nil {
		if r.lastFailed == nil {
			r.lastFailed = &attempt{err: fmt.Errorf("connect to trojan server %s: %w", t.Server, ctx.Err())}
		}
		return t.finish(start, r.lastFailed, false)
	}
	tg := r.winner.target
	return t.finish(start, r.winner, tg.tfoA != nil && tg.plainA != nil)
}

// run takes in events and late timers until an attempt wins or none is left running.
func (r *racer) run() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for r.winner == nil && r.running > 0 {
		var tick <-chan time.Time
		if next := r.nextLate(); !next.IsZero() {
			timer.Reset(time.Until(next))
			tick = timer.C
		}
		select {
		case ev := <-r.events:
			if a := r.handle(ev); a != nil && a.err == nil {
				r.winner = a
			}
		case <-tick:
			r.handleLate(time.Now())
		}
	}
}

// startNext starts the next address, as its plan says, unless the race is decided.
func (r *racer) startNext() {
	if r.decided || len(r.targets) == len(r.addrs) || r.ctx.Err() != nil {
		return
	}
	tg := &target{plan: r.t.Paths.Plan(r.addrs[len(r.targets)])}
	r.targets = append(r.targets, tg)
	tg.late = time.Now().Add(tg.plan.RaceDial)
	if tg.plan.TFO {
		tg.tfoA = r.launch(tg, true)
	} else {
		tg.plainA = r.launch(tg, false)
	}
}

// racePlain starts a plain attempt on tg's address alongside its TFO one.
func (r *racer) racePlain(tg *target) {
	if !r.decided && tg.plainA == nil && r.ctx.Err() == nil {
		tg.plainA = r.launch(tg, false)
	}
}

// raceTFO2 starts a second TFO attempt on tg's address, only when the first one had a cookie (its
// dial returned: the SYN carried data) and that SYN is still unanswered; a probe or a path in doubt
// races plain only.
func (r *racer) raceTFO2(tg *target) {
	a := tg.tfoA
	if r.decided || tg.tfo2A != nil || r.ctx.Err() != nil || tg.plan.Probe || tg.plan.RaceDial == pathstate.RaceAtOnce ||
		a == nil || !a.seenDial || a.seenDone || !tfo.SYNUnanswered(a.fw.Conn) || !r.t.Paths.TryResend(tg.plan.Server) {
		return
	}
	tg.tfo2A = r.launch(tg, true)
}

// launch starts an attempt on tg's address in its own goroutine, owned by the racer: settle waits
// for the done event of every attempt launched.
func (r *racer) launch(tg *target, viaTFO bool) *attempt {
	actx, cancel := context.WithCancel(r.ctx)
	a := &attempt{target: tg, viaTFO: viaTFO, cancel: cancel, start: time.Now()}
	r.running++
	tg.running++
	dial := r.t.plainDial()
	if viaTFO {
		dial = r.t.tfoDial()
	}
	go func() {
		a.run(actx, dial, tg.plan.Server, r.t.TLS, r.timeout, func() { r.events <- event{a: a} })
		a.end = time.Now()
		r.events <- event{a: a, done: true}
	}()
	return a
}

// handle takes in an event; it returns the attempt when it ended.
func (r *racer) handle(ev event) *attempt {
	a, tg := ev.a, ev.a.target
	if !ev.done {
		a.seenDial = true
		if !tg.lateFired && a == tg.firstAttempt() {
			tg.late = a.dialEnd.Add(tg.plan.RaceHandshake)
			if a == tg.tfoA && tg.plan.ResendSYN > 0 {
				tg.resend = a.dialEnd.Add(tg.plan.ResendSYN)
			}
		}
		return nil
	}
	a.seenDone = true
	r.running--
	tg.running--
	if a == tg.tfo2A {
		r.t.Paths.ResendDone(tg.plan.Server)
	}
	if a.err != nil {
		r.lastFailed = a
		if a == tg.tfoA {
			tg.tfoErr = a.err
			r.racePlain(tg) // a path that refuses SYN data may still carry a plain connection
		}
		if tg.running == 0 {
			r.startNext() // this address failed: the next one now
		}
	}
	return a
}

// nextLate is when the next running address becomes late or gets its second TFO attempt; zero if
// none can.
func (r *racer) nextLate() time.Time {
	var next time.Time
	for _, tg := range r.targets {
		if !tg.lateFired && tg.running > 0 && (next.IsZero() || tg.late.Before(next)) {
			next = tg.late
		}
		if tg.resendDue() && (next.IsZero() || tg.resend.Before(next)) {
			next = tg.resend
		}
	}
	return next
}

// resendDue reports whether tg waits for the time of a second TFO attempt.
func (tg *target) resendDue() bool { return !tg.resend.IsZero() && tg.tfo2A == nil && tg.running > 0 }

// handleLate races a plain attempt (and, after a lost SYN with data, a second TFO one) on every
// address that became late, and starts the next address.
func (r *racer) handleLate(now time.Time) {
	for _, tg := range r.targets {
		if tg.resendDue() && !now.Before(tg.resend) {
			tg.resend = time.Time{}
			r.raceTFO2(tg)
		}
		if !tg.lateFired && tg.running > 0 && !now.Before(tg.late) {
			tg.lateFired = true
			if tg.plan.TFO {
				r.racePlain(tg)
				r.raceTFO2(tg)
			}
			r.startNext()
		}
	}
}

// settle ends the race: it takes in what already happened, reads from the kernel what each address
// showed, then stops the losers, waits for every attempt and closes what they left open. It returns
// one result per address tried.
func (r *racer) settle() []pathstate.Result {
	r.decided = true
	for drained := false; !drained; {
		select {
		case ev := <-r.events:
			r.handle(ev)
		default:
			drained = true
		}
	}
	results := make([]pathstate.Result, len(r.targets))
	for i, tg := range r.targets {
		results[i] = r.result(tg)
	}
	r.eachLoser(func(a *attempt) { a.cancel() })
	for r.running > 0 {
		r.handle(<-r.events)
	}
	r.eachLoser((*attempt).discard)
	return results
}

// result is what tg's address showed, for its path state.
func (r *racer) result(tg *target) pathstate.Result {
	res := pathstate.Result{Plan: tg.plan, Raced: tg.tfoA != nil && tg.plainA != nil, Resent: tg.tfo2A != nil}
	if a := tg.tfoA; a != nil {
		if a.seenDial {
			res.Outcome = tfo.ClientOutcome(a.fw.Conn)
			res.SYNUnanswered = !a.seenDone && tfo.SYNUnanswered(a.fw.Conn)
		} else {
			// Still dialing: without a cookie the kernel waits in connect for the answer to its SYN.
			res.SYNUnanswered = !a.seenDone
		}
	}
	w := r.winner
	switch {
	case w != nil && w.target == tg && w == tg.tfoA:
		res.Winner, res.RTT, res.Handshake = pathstate.WonTFO, w.rtt(), w.end.Sub(w.dialEnd)
	case w != nil && w.target == tg && w == tg.tfo2A:
		// The second SYN with data got through where the first did not: random loss.
		res.Winner, res.RTT, res.Outcome, res.SYNUnanswered = pathstate.WonTFO, w.rtt(), tfo.ClientOutcome(w.fw.Conn), false
	case w != nil && w.target == tg:
		res.Winner, res.RTT = pathstate.WonPlain, w.rtt()
		if tg.tfoErr != nil && r.ctx.Err() == nil {
			res.TFOErr = tg.tfoErr
		}
	case w != nil:
		res.Unreachable = !tg.tfoA.answered() && !tg.plainA.answered() && !tg.tfo2A.answered()
	}
	return res
}

// eachLoser calls fn for every attempt launched but the winner.
func (r *racer) eachLoser(fn func(*attempt)) {
	for _, tg := range r.targets {
		for _, a := range []*attempt{tg.tfoA, tg.plainA, tg.tfo2A} {
			if a != nil && a != r.winner {
				fn(a)
			}
		}
	}
}

// discard closes what an ended attempt left open.
func (a *attempt) discard() {
	a.cancel()
	if a.conn != nil {
		_ = a.conn.Close()
	} else if a.fw != nil {
		_ = a.fw.Conn.Close()
	}
}

// answered reports whether the attempt got a connection whose SYN was answered and that did not fail.
func (a *attempt) answered() bool {
	if a == nil || !a.seenDial {
		return false
	}
	if a.seenDone {
		return a.err == nil
	}
	return !tfo.SYNUnanswered(a.fw.Conn)
}

func (a *attempt) rtt() time.Duration {
	if a.fw == nil {
		return 0
	}
	rtt, _ := tfo.KernelRTT(a.fw.Conn)
	return rtt
}

// serverAddrs returns the addresses to try for t.Server: the address itself, or the addresses its
// name resolves to, families interleaved starting with the resolver's first (RFC 8305 §4), those
// that recently did not answer last.
func (t *Trojan) serverAddrs(ctx context.Context) ([]string, error) {
	host, port, err := net.SplitHostPort(t.Server)
	if err != nil {
		return []string{t.Server}, nil // the dial reports the bad address
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return []string{t.Server}, nil
	}
	resolve := t.Resolve
	if resolve == nil {
		resolve = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	ips, err := resolve(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("resolve trojan server %s: %w", host, err)
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("resolve trojan server %s: no addresses", host)
	}
	addrs := interleave(ips, t.PreferIPv4)
	for i, a := range addrs {
		addrs[i] = net.JoinHostPort(a, port)
	}
	return t.Paths.Order(addrs), nil
}

// interleave orders ips by family, alternating, starting with the family of the first (IPv4 when
// preferIPv4 and there is one).
func interleave(ips []netip.Addr, preferIPv4 bool) []string {
	firstIs4 := ips[0].Unmap().Is4()
	if preferIPv4 && slices.ContainsFunc(ips, func(ip netip.Addr) bool { return ip.Unmap().Is4() }) {
		firstIs4 = true
	}
	var first, second []netip.Addr
	for _, ip := range ips {
		ip = ip.Unmap()
		if ip.Is4() == firstIs4 {
			first = append(first, ip)
		} else {
			second = append(second, ip)
		}
	}
	addrs := make([]string, 0, len(ips))
	for i := 0; i < len(first) || i < len(second); i++ {
		if i < len(first) {
			addrs = append(addrs, first[i].String())
		}
		if i < len(second) {
			addrs = append(addrs, second[i].String())
		}
	}
	return addrs
}
