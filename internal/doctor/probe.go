package doctor

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"
	"time"

	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/tcpmetrics"
	"github.com/fastrojan/fastrojan/internal/tfo"
	"github.com/fastrojan/fastrojan/internal/tlsconf"
)

// DefaultProbeConns is how many connections a probe makes: the first may only fetch a cookie.
const DefaultProbeConns = 3

// ProbeCheck connects to a real server a few times with TFO, each time sending the TLS ClientHello
// a fastrojan client would, and says whether the path delivers SYN data, whether the server does
// TFO at all, or whether something drops SYNs that carry data; with the RTT and the ClientHello size
// against the SYN budget.
type ProbeCheck struct {
	Env    Env
	Addr   string         // host:port of the server
	Config *config.Config // a client config: its TLS settings are used; nil: defaults, unverified
	Conns  int            // connections to make; DefaultProbeConns when zero

	beforeDial func(i int) // tests: called before connection i (0-based)
}

// Name implements Check.
func (*ProbeCheck) Name() string { return "probe" }

// attempt is what one probe connection saw.
type attempt struct {
	outcome   tfo.Outcome
	handshake time.Duration
	rtt       time.Duration
	hello     int
	remote    string
	cookie    []byte // cached for the server after this connection; nil if none or unknown
	tlsErr    error
}

// Run implements Check.
func (p *ProbeCheck) Run(ctx context.Context, out *Out) error {
	if !tfoPlatform {
		return fmt.Errorf("probe: %w", errors.ErrUnsupported)
	}
	host, _, err := net.SplitHostPort(p.Addr)
	if err != nil {
		return fmt.Errorf("probe %q: want HOST:PORT: %w", p.Addr, err)
	}
	tlsCfg, err := p.tlsConfig(host)
	if err != nil {
		return fmt.Errorf("probe TLS config: %w", err)
	}
	n := p.Conns
	if n <= 0 {
		n = DefaultProbeConns
	}
	d := &tfo.Dialer{Dialer: net.Dialer{Timeout: 5 * time.Second}, Logger: slog.New(slog.DiscardHandler)}
	var atts []attempt
	for i := range n {
		if p.beforeDial != nil {
			p.beforeDial(i)
		}
		a, err := p.once(ctx, d, tlsCfg)
		if err != nil {
			out.Problem(Fail, "check that the server runs and that "+p.Addr+" is its address and port",
				"connection %d to %s failed: %v", i+1, p.Addr, err)
			return nil
		}
		atts = append(atts, a)
		line := fmt.Sprintf("connection %d: %s, TLS handshake %s", i+1, a.outcome, a.handshake.Round(100*time.Microsecond))
		if a.rtt > 0 {
			line += fmt.Sprintf(" = %.2f RTT (kernel RTT %s)", float64(a.handshake)/float64(a.rtt), a.rtt.Round(100*time.Microsecond))
		}
		if a.tlsErr != nil {
			line += fmt.Sprintf(" (TLS: %v)", a.tlsErr)
		}
		out.Logf("%s", line)
	}
	p.verdict(out, atts)
	return nil
}

func (p *ProbeCheck) tlsConfig(host string) (*tls.Config, error) {
	if p.Config != nil && p.Config.RunType != config.RunServer {
		return tlsconf.ClientTFO(p.Config.SSL, host, nil)
	}
	ssl := config.Default(config.RunClient).SSL
	ssl.Verify = false // the probe looks at the handshake, not at whom it reaches
	return tlsconf.ClientTFO(ssl, host, nil)
}

// once makes one probe connection.
func (p *ProbeCheck) once(ctx context.Context, d *tfo.Dialer, tlsCfg *tls.Config) (attempt, error) {
	var a attempt
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	var raw net.Conn
	if err := p.Env.do(func() (err error) { raw, err = d.DialContext(ctx, "tcp", p.Addr); return err }); err != nil {
		return a, err
	}
	defer raw.Close()
	a.remote = raw.RemoteAddr().String()
	rec := &firstWrite{Conn: raw}
	tc := tls.Client(rec, tlsCfg)
	err := tc.HandshakeContext(ctx)
	a.handshake = time.Since(start)
	a.hello = rec.n
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) || isConnRefused(err) {
			return a, err
		}
		a.tlsErr = err // the server answered: the TFO outcome is known all the same
	}
	_ = p.Env.do(func() error { a.outcome = tfo.ClientOutcome(raw); return nil })
	a.rtt, _ = tfo.KernelRTT(raw)
	a.cookie = p.cachedCookie(raw.RemoteAddr())
	return a, nil
}

func isConnRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// cachedCookie returns the kernel's cached cookie for the server after a connection, nil if none.
func (p *ProbeCheck) cachedCookie(remote net.Addr) []byte {
	ta, ok := remote.(*net.TCPAddr)
	if !ok {
		return nil
	}
	ip := ta.AddrPort().Addr().Unmap()
	var entries []tcpmetrics.Entry
	if err := p.Env.do(func() (err error) { entries, err = tcpmetrics.Dump(); return err }); err != nil {
		return nil
	}
	for _, e := range entries {
		if e.Dst.Unmap() == ip && e.HasCookie() {
			return e.Cookie
		}
	}
	return nil
}

// verdict turns the attempts into findings.
func (p *ProbeCheck) verdict(out *Out, atts []attempt) {
	count := map[tfo.Outcome]int{}
	var rtt time.Duration
	hello, limit := 0, 0
	cookieChanged, cookieKnown := false, false
	var last []byte
	for i, a := range atts {
		count[a.outcome]++
		if a.rtt > 0 {
			rtt = a.rtt
		}
		hello = max(hello, a.hello)
		if l := tfo.MaxSYNData(a.remote); limit == 0 || l < limit {
			limit = l
		}
		if i > 0 && last != nil && a.cookie != nil && !bytes.Equal(last, a.cookie) {
			cookieChanged = true
		}
		if a.cookie != nil {
			last, cookieKnown = a.cookie, true
		}
	}
	if rtt > 0 {
		out.Logf("RTT to %s: %s (kernel estimate)", p.Addr, rtt.Round(100*time.Microsecond))
	}
	out.Logf("TLS ClientHello %d bytes; the SYN carries at most %d", hello, limit)
	clientFix := `in the client's config.json: "ssl": {"curves": "X25519:P-256"}   (or leave ssl.curves empty)`
	if hello > limit {
		out.Problem(Fail, clientFix, "the ClientHello (%d bytes) does not fit in the SYN (%d): TFO saves no round trip", hello, limit)
	}
	serverFix := "on the server: " + sysctlFix(tfo.Sysctl(0)) + "\n" + `and in the server's config.json: "tcp": {"fast_open": true}`
	queueFix := `in the server's config.json: "tcp": {"fast_open_qlen": 4096} and no "fastrojan": {"tfo": {"exact_qlen": true}}` +
		"\nand on the server: sysctl -w net.core.somaxconn=4096   (the kernel caps the TFO queue at it)"
	n := len(atts)
	acc, dropped, refused, asked := count[tfo.Accepted], count[tfo.SYNDataDropped], count[tfo.DataNotAccepted], count[tfo.CookieRequested]
	switch {
	case count[tfo.Unsupported] > 0:
		s, _ := p.Env.SysctlInt(tfo.SysctlKey)
		out.Problem(Fail, sysctlFix(tfo.Sysctl(s)), "this host cannot send SYN data: %s", tfo.Unsupported.Meaning())
	case dropped > 0:
		out.Problem(Fail, `in the client's config.json: "tcp": {"fast_open": false}   (until the middlebox that drops SYN data is fixed or avoided)`,
			"something on the path to %s drops SYNs that carry data: %d of %d connections waited for a SYN retransmit without data (about 1 s each)", p.Addr, dropped, n)
	case refused > 0 && cookieChanged:
		out.Problem(Fail, farmFix,
			"the server refused our cookie on %d of %d connections while handing out a different one each time: several nodes behind %s with different TFO keys", refused, n, p.Addr)
	case refused > 0 && acc > 0 && cookieKnown:
		// Data refused with the very cookie the server accepted on other connections, and no new
		// cookie handed out: the server's TFO queue was full at that moment (a key change would
		// have brought a new cookie). The SYN with data was answered: this is not the path.
		out.Problem(Warn, queueFix,
			"the server's TFO queue overflowed: it refused the SYN data of %d of %d connections while accepting the same cookie on %d "+
				"(the path delivers SYN data; each refusal costs one round trip; on the server TcpExt TCPFastOpenListenOverflow grows)", refused, n, acc)
	case refused > 0 && acc == 0:
		out.Problem(Fail, serverFix+"\nor, if its TFO queue overflows (TcpExt TCPFastOpenListenOverflow on the server): "+queueFix,
			"the server refused SYN data with the cookie it issued on %d of %d connections: its TFO was switched off, its key changed, or its TFO queue is full", refused, n)
	case acc > 0 && refused > 0:
		out.Problem(Warn, farmFix,
			"SYN data accepted on %d and refused on %d of %d connections: a node behind %s with another key, or a full TFO queue", acc, refused, n, p.Addr)
	case acc > 0:
		msg := fmt.Sprintf("the path to %s delivers SYN data and the server accepts it (%d of %d connections; the first may fetch the cookie)", p.Addr, acc, n)
		out.Report(OK, msg, "")
	case asked == n && n >= 2:
		out.Problem(Fail, serverFix,
			"the server never issued a TFO cookie in %d connections: it does not do TFO (or a middlebox strips the TFO option)", n)
	default:
		out.Problem(Warn, serverFix, "no connection used TFO (%v): the server may not do TFO", outcomeList(atts))
	}
}

func outcomeList(atts []attempt) []string {
	s := make([]string, len(atts))
	for i, a := range atts {
		s[i] = a.outcome.String()
	}
	return s
}

// firstWrite records the size of the first write (the ClientHello record that rides in the SYN).
type firstWrite struct {
	net.Conn
	n int
}

func (f *firstWrite) Write(b []byte) (int, error) {
	if f.n == 0 {
		f.n = len(b)
	}
	return f.Conn.Write(b)
}

// NetConn returns the TCP connection, so TCP_INFO readers reach it.
func (f *firstWrite) NetConn() net.Conn { return f.Conn }
