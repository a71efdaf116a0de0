package outbound

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/fastrojan/fastrojan/internal/tfo"
	"github.com/fastrojan/fastrojan/internal/tfo/pathstate"
)

// dialFunc opens a TCP connection.
type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// attempt is one TCP connection plus TLS handshake to one server address, run by its own goroutine,
// which sends an event when the dial returned a connection and one when the attempt ended, and
// touches the attempt no more after the last.
type attempt struct {
	target  *target
	viaTFO  bool
	cancel  context.CancelFunc
	start   time.Time
	dialEnd time.Time   // set before the dialed event
	fw      *firstWrite // the connection below TLS; set before the dialed event (nil if the dial failed)
	end     time.Time   // set before the done event
	conn    *tls.Conn   // set on success, before the done event
	err     error       // set on failure, before the done event

	// Seen by the coordinator: it reads the fields above only after the matching event.
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
	// carried data) is still unanswered: a SYN lost at random costs 1.5 RTT, not the 3 RTT of a
	// plain connection, and its answer shows whether SYN data gets through now.
	tfo2A     *attempt
	running   int
	late      time.Time // when the address counts as late
	lateFired bool
	resend    time.Time // when an unanswered SYN with data gets a second TFO attempt (zero: none)
	tfoErr    error
}

// launch starts an attempt on tg's address; it reports on events, which must have room for both of
// its events so that it never blocks.
func (t *Trojan) launch(ctx context.Context, tg *target, dial dialFunc, viaTFO bool, timeout time.Duration, events chan<- event) *attempt {
	actx, cancel := context.WithCancel(ctx)
	a := &attempt{target: tg, viaTFO: viaTFO, cancel: cancel, start: time.Now()}
	tg.running++
	addr := tg.plan.Server
	go func() { // owned by handshakeRaced: it waits for the done event of every attempt it launched
		defer func() { a.end = time.Now(); events <- event{a: a, done: true} }()
		raw, err := dial(actx, "tcp", addr)
		if err != nil {
			a.err = fmt.Errorf("dial trojan server %s: %w", addr, err)
			return
		}
		a.dialEnd = time.Now()
		a.fw = &firstWrite{Conn: raw}
		events <- event{a: a}
		conn := tls.Client(a.fw, t.TLS)
		if err := conn.HandshakeContext(actx); err != nil {
			switch {
			case errors.Is(err, context.DeadlineExceeded):
				a.err = fmt.Errorf("tls handshake with %s: no TLS handshake within %s: %w", addr, timeout, err)
			case connectFailed(err):
				// With TCP Fast Open the connect completes during the handshake.
				a.err = fmt.Errorf("connect to trojan server %s: %w", addr, err)
			default:
				a.err = fmt.Errorf("tls handshake with %s: %w", addr, err)
			}
			return
		}
		a.conn = conn
	}()
	return a
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

// plainDial is the dial without TCP Fast Open.
func (t *Trojan) plainDial() dialFunc {
	if t.DialPlain != nil {
		return t.DialPlain
	}
	d := &net.Dialer{}
	return d.DialContext
}

// tfoDial is the dial with TCP Fast Open.
func (t *Trojan) tfoDial() dialFunc {
	if t.Dial != nil {
		return t.Dial
	}
	return (&tfo.Dialer{}).DialContext
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
	firstIs4 := ips[0].Unmap().Is4()
	if t.PreferIPv4 && slices.ContainsFunc(ips, func(ip netip.Addr) bool { return ip.Unmap().Is4() }) {
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
	for i, a := range addrs {
		addrs[i] = net.JoinHostPort(a, port)
	}
	return t.Paths.Order(addrs), nil
}

// handshakeRaced is Handshake with per-server TFO memory (t.Paths). Each address is dialed with TFO
// or plainly as its state says. A TFO attempt whose dial or TLS handshake is late (by delays derived
// from the address's measured RTT) gets a plain connection raced alongside; an address whose attempt
// is late also starts the next address of the name, in the spirit of RFC 8305 but judged by TLS
// handshake completion, since a TFO connect "succeeds" at once. The first connection to complete
// its handshake is kept; the others are closed before their handshakes complete, which the server
// sheds as failed handshakes. What each address showed goes back into its state.
func (t *Trojan) handshakeRaced(ctx context.Context, timeout time.Duration) (*tls.Conn, error) {
	start := time.Now()
	addrs, err := t.serverAddrs(ctx)
	if err != nil {
		t.finishRaced(start, &attempt{err: err}, false)
		return nil, err
	}
	events := make(chan event, 2*3*len(addrs))
	var targets []*target
	running := 0
	decided := false // a winner is chosen, or all failed: nothing new starts
	launch := func(tg *target, viaTFO bool) *attempt {
		running++
		if viaTFO {
			return t.launch(ctx, tg, t.tfoDial(), true, timeout, events)
		}
		return t.launch(ctx, tg, t.plainDial(), false, timeout, events)
	}
	startNext := func() {
		if decided || len(targets) == len(addrs) || ctx.Err() != nil {
			return
		}
		tg := &target{plan: t.Paths.Plan(addrs[len(targets)])}
		targets = append(targets, tg)
		tg.late = time.Now().Add(tg.plan.RaceDial)
		if tg.plan.TFO {
			tg.tfoA = launch(tg, true)
		} else {
			tg.plainA = launch(tg, false)
		}
	}
	racePlain := func(tg *target) {
		if !decided && tg.plainA == nil && ctx.Err() == nil {
			tg.plainA = launch(tg, false)
		}
	}
	raceTFO2 := func(tg *target) {
		// Only when the first attempt had a cookie (its dial returned: the SYN carried data) and
		// that SYN is unanswered; a probe or a path in doubt races plain only.
		a := tg.tfoA
		if decided || tg.tfo2A != nil || ctx.Err() != nil || tg.plan.Probe || tg.plan.RaceDial == pathstate.RaceAtOnce ||
			a == nil || !a.seenDial || a.seenDone || !tfo.SYNUnanswered(a.fw.Conn) || !t.Paths.TryResend(tg.plan.Server) {
			return
		}
		tg.tfo2A = launch(tg, true)
	}
	// handle takes in an event; it returns the attempt when it ended.
	var lastFailed *attempt
	handle := func(ev event) *attempt {
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
		running--
		tg.running--
		if a == tg.tfo2A {
			t.Paths.ResendDone(tg.plan.Server)
		}
		if a.err != nil {
			lastFailed = a
			if a == tg.tfoA {
				tg.tfoErr = a.err
				racePlain(tg) // a path that refuses SYN data may still carry a plain connection
			}
			if tg.running == 0 {
				startNext() // this address failed: the next one now
			}
		}
		return a
	}
	startNext()

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var winner *attempt
	for winner == nil && running > 0 {
		var next time.Time
		for _, tg := range targets {
			if !tg.lateFired && tg.running > 0 && (next.IsZero() || tg.late.Before(next)) {
				next = tg.late
			}
			if !tg.resend.IsZero() && tg.tfo2A == nil && tg.running > 0 && (next.IsZero() || tg.resend.Before(next)) {
				next = tg.resend
			}
		}
		var tick <-chan time.Time
		if !next.IsZero() {
			timer.Reset(time.Until(next))
			tick = timer.C
		}
		select {
		case ev := <-events:
			if a := handle(ev); a != nil && a.err == nil {
				winner = a
			}
		case <-tick:
			now := time.Now()
			for _, tg := range targets {
				if !tg.resend.IsZero() && tg.tfo2A == nil && tg.running > 0 && !now.Before(tg.resend) {
					tg.resend = time.Time{}
					raceTFO2(tg)
				}
				if !tg.lateFired && tg.running > 0 && !now.Before(tg.late) {
					tg.lateFired = true
					if tg.plan.TFO {
						racePlain(tg)
						raceTFO2(tg)
					}
					startNext()
				}
			}
		}
	}

	decided = true
	// Take in what already happened, then read from the kernel what each address showed before the
	// losers are abandoned.
	for drained := false; !drained; {
		select {
		case ev := <-events:
			handle(ev)
		default:
			drained = true
		}
	}
	results := make([]pathstate.Result, len(targets))
	for i, tg := range targets {
		r := pathstate.Result{Plan: tg.plan, Raced: tg.tfoA != nil && tg.plainA != nil, Resent: tg.tfo2A != nil}
		if a := tg.tfoA; a != nil {
			if a.seenDial {
				r.Outcome = tfo.ClientOutcome(a.fw.Conn)
				r.SYNUnanswered = !a.seenDone && tfo.SYNUnanswered(a.fw.Conn)
			} else {
				// Still dialing: without a cookie the kernel waits in connect for the answer to its SYN.
				r.SYNUnanswered = !a.seenDone
			}
		}
		switch {
		case winner != nil && winner.target == tg && winner == tg.tfoA:
			r.Winner, r.RTT, r.Handshake = pathstate.WonTFO, rttOf(winner), winner.end.Sub(winner.dialEnd)
		case winner != nil && winner.target == tg && winner == tg.tfo2A:
			// The second SYN with data got through where the first did not: random loss.
			r.Winner, r.RTT, r.Outcome, r.SYNUnanswered = pathstate.WonTFO, rttOf(winner), tfo.ClientOutcome(winner.fw.Conn), false
		case winner != nil && winner.target == tg:
			r.Winner, r.RTT = pathstate.WonPlain, rttOf(winner)
			if tg.tfoErr != nil && ctx.Err() == nil {
				r.TFOErr = tg.tfoErr
			}
		case winner != nil:
			r.Unreachable = !tg.tfoA.answered() && !tg.plainA.answered() && !tg.tfo2A.answered()
		}
		results[i] = r
	}
	for _, tg := range targets {
		for _, a := range []*attempt{tg.tfoA, tg.plainA, tg.tfo2A} {
			if a != nil && a != winner {
				a.cancel()
			}
		}
	}
	for running > 0 {
		handle(<-events)
	}
	for _, tg := range targets {
		for _, a := range []*attempt{tg.tfoA, tg.plainA, tg.tfo2A} {
			if a != nil && a != winner {
				a.discard()
			}
		}
	}
	for _, r := range results {
		t.Paths.Report(r)
	}
	if winner == nil {
		if lastFailed == nil {
			lastFailed = &attempt{err: fmt.Errorf("connect to trojan server %s: %w", t.Server, ctx.Err())}
		}
		return t.finishRaced(start, lastFailed, false)
	}
	return t.finishRaced(start, winner, winner.target.tfoA != nil && winner.target.plainA != nil)
}

// firstAttempt is the attempt the address's plan started with.
func (tg *target) firstAttempt() *attempt {
	if tg.plan.TFO {
		return tg.tfoA
	}
	return tg.plainA
}

// finishRaced reports the attempt that decides the handshake to Observe and returns its result.
func (t *Trojan) finishRaced(start time.Time, a *attempt, raced bool) (*tls.Conn, error) {
	if t.Observe != nil {
		info := HandshakeInfo{Server: t.Server, Duration: time.Since(start), Err: a.err, Raced: raced}
		if a.fw != nil {
			info.HelloBytes = a.fw.n
			info.TFO = tfo.ClientOutcome(a.fw.Conn)
		}
		if a.conn != nil {
			info.Resumed = a.conn.ConnectionState().DidResume
		}
		t.Observe(info)
	}
	if a.err != nil {
		if a.fw != nil {
			_ = a.fw.Conn.Close()
		}
		return nil, a.err
	}
	return a.conn, nil
}

func rttOf(a *attempt) time.Duration {
	if a.fw == nil {
		return 0
	}
	rtt, _ := tfo.KernelRTT(a.fw.Conn)
	return rtt
}
