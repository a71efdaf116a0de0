package doctor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/tfo"
)

// SelfTestCheck listens with TFO on a fresh loopback address and dials it twice: the first
// connection asks for a cookie, the second must carry its data in the SYN and be accepted. The
// kernel, not fastrojan, says what happened.
type SelfTestCheck struct {
	Env    Env
	Config *config.Config
}

// Name implements Check.
func (SelfTestCheck) Name() string { return "selftest" }

// Run implements Check.
func (c SelfTestCheck) Run(ctx context.Context, out *Out) error {
	if !tfoPlatform {
		return fmt.Errorf("self-test: %w", errors.ErrUnsupported)
	}
	quiet := slog.New(slog.DiscardHandler)
	// A loopback address of its own (all of 127/8 is local on Linux), so no cookie is cached for it
	// yet and the first dial shows the cookie being requested.
	ip := netip.AddrFrom4([4]byte{127, byte(1 + rand.IntN(254)), byte(rand.IntN(256)), byte(1 + rand.IntN(254))})
	var ln *net.TCPListener
	err := c.Env.do(func() (err error) {
		ln, err = tfo.Listen(ctx, "tcp4", netip.AddrPortFrom(ip, 0).String(), 8, quiet)
		return err
	})
	if err != nil {
		return fmt.Errorf("self-test listener: %w", err)
	}
	served := make(chan tfo.Outcome, 2)
	done := make(chan struct{})
	go func() { // owned by Run: ends when ln closes, Run waits for it
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			o := tfo.ServerOutcome(conn)
			_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
			buf := make([]byte, 64)
			_, _ = conn.Read(buf)
			_, _ = conn.Write([]byte("ok"))
			_ = conn.Close()
			served <- o
		}
	}()
	defer func() { _ = ln.Close(); <-done }()

	d := &tfo.Dialer{Dialer: net.Dialer{Timeout: 3 * time.Second}, Logger: quiet}
	var outs [2]tfo.Outcome
	for i := range outs {
		o, srv, err := c.dialOnce(ctx, d, ln.Addr().String(), served)
		if err != nil {
			return fmt.Errorf("self-test dial %d: %w", i+1, err)
		}
		outs[i] = o
		out.Logf("dial %d to %s: client %s, server %s", i+1, ln.Addr(), o, srv)
	}
	if outs[1] == tfo.Accepted {
		out.Logf("TFO works on this host: %s → %s", outs[0], outs[1])
		return nil
	}
	s, _ := c.Env.SysctlInt(tfo.SysctlKey)
	sys := tfo.Sysctl(s)
	fix := sysctlFix(sys)
	r := roleOf(c.Config)
	// A missing sysctl bit is a failure for the role the config gives this host, a warning when
	// no config says what the host is for.
	sev := func(needed bool) Severity {
		switch {
		case !r.known:
			return Warn
		case needed && r.tfoOn:
			return Fail
		}
		return Note
	}
	switch {
	case !sys.Client() || outs[1] == tfo.Unsupported:
		out.Problem(sev(r.client), fix, "the self-test could not try TFO: %s lacks the client bit 0x1 (second dial: %s)", tfo.SysctlKey, outs[1])
	case !sys.Server():
		out.Problem(sev(r.server), fix, "the self-test's listener got no TFO: %s lacks the server bit 0x2 (second dial: %s)", tfo.SysctlKey, outs[1])
	default:
		out.Problem(Fail, "", "TFO fails on loopback although %s=%d allows it: the second connection was %s (%s)", tfo.SysctlKey, s, outs[1], outs[1].Meaning())
	}
	return nil
}

func (c SelfTestCheck) dialOnce(ctx context.Context, d *tfo.Dialer, addr string, served <-chan tfo.Outcome) (client, server tfo.Outcome, err error) {
	var conn net.Conn
	if err := c.Env.do(func() (err error) { conn, err = d.DialContext(ctx, "tcp4", addr); return err }); err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := conn.Write([]byte("fastrojan doctor self-test")); err != nil {
		return 0, 0, err
	}
	if _, err := io.ReadFull(conn, make([]byte, 2)); err != nil {
		return 0, 0, fmt.Errorf("read reply: %w", err)
	}
	_ = c.Env.do(func() error { client = tfo.ClientOutcome(conn); return nil })
	select {
	case server = <-served:
	case <-time.After(3 * time.Second):
		return 0, 0, errors.New("the listener did not report the connection")
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
	return client, server, nil
}
