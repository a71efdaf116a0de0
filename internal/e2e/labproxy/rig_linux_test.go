package labproxy_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"github.com/fastrojan/fastrojan/internal/client"
	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/netlab"
	"github.com/fastrojan/fastrojan/internal/outbound"
	"github.com/fastrojan/fastrojan/internal/server"
	"github.com/fastrojan/fastrojan/internal/tfo"
	"github.com/fastrojan/fastrojan/internal/tfo/pathstate"
	"github.com/fastrojan/fastrojan/internal/tlsconf"
	"github.com/fastrojan/fastrojan/internal/users"
)

// rigOptions choose which legs use TFO and the server host's sysctl.
type rigOptions struct {
	RTT                                 time.Duration
	ClientTFO, ServerListen, ServerDial bool
	ServerSysctl                        int              // netlab.HostOptions semantics; 0 = 3
	SessionTickets                      bool             // server issues tickets (trojan-gfw default: off)
	Paths                               *pathstate.Table // client's per-server TFO memory; nil: none
	ServerLog                           *slog.Logger     // the server's log; nil: discarded
	// ServerName, if set, is what the client dials instead of the server's address, resolved by
	// Resolve (with Paths).
	ServerName string
	Resolve    func(ctx context.Context, host string) ([]netip.Addr, error)
}

// rig is the real client and server, in process, on a lab path: an HTTP application on the client
// host speaks SOCKS5 to the client, which dials the server host over the emulated WAN; the server
// dials the origin, a web server on its own host behind the server (so each host's kernel counters
// see exactly one TFO leg: client Active, server Passive for client→server; server Active, origin
// Passive for server→origin).
type rig struct {
	p         *netlab.Path
	socksAddr string
	url       string
	rtt       time.Duration
	srv       *server.Server

	mu         sync.Mutex
	handshakes []outbound.HandshakeInfo
	conns      []server.ConnInfo
}

// doDialer dials from inside a lab host.
type doDialer struct {
	h    *netlab.Host
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (d doDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := d.h.Do(func() (err error) { c, err = d.dial(ctx, network, addr); return err })
	return c, err
}

func (d doDialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}

func plainDial(h *netlab.Host) doDialer {
	var nd net.Dialer
	return doDialer{h, nd.DialContext}
}

func tfoDial(h *netlab.Host) doDialer {
	d := &tfo.Dialer{}
	return doDialer{h, d.DialContext}
}

func listenIn(t testing.TB, h *netlab.Host, addr string, useTFO bool) net.Listener {
	t.Helper()
	var ln net.Listener
	err := h.Do(func() error {
		if useTFO {
			l, err := tfo.Listen(context.Background(), "tcp", addr, 64, quiet())
			ln = l
			return err
		}
		var lc net.ListenConfig
		lc.SetMultipathTCP(false)
		l, err := lc.Listen(context.Background(), "tcp", addr)
		ln = l
		return err
	})
	if err != nil {
		t.Fatalf("listen %s in %s: %v", addr, h.Name(), err)
	}
	return ln
}

func newRig(t testing.TB, o rigOptions) *rig {
	t.Helper()
	p := netlab.NewPath(t, netlab.PathOptions{RTT: o.RTT, ServerTFO: o.ServerSysctl})
	r := &rig{p: p, rtt: o.RTT}

	// Origin: a web page on the origin host, accepting TFO (the server→origin leg).
	oln := listenIn(t, p.Origin, netip.AddrPortFrom(p.OriginAddr.V4, 80).String(), true)
	origin := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "hello from the origin\n")
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = origin.Serve(oln) }()
	t.Cleanup(func() { _ = origin.Close() })
	r.url = "http://" + netip.AddrPortFrom(p.OriginAddr.V4, 80).String() + "/"

	// Certificates as a user has them: files, read by the same code the CLI uses.
	dir := t.TempDir()
	certPEM, keyPEM, err := tlsconf.GenerateSelfSigned([]string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := errors.Join(os.WriteFile(certFile, certPEM, 0o600), os.WriteFile(keyFile, keyPEM, 0o600)); err != nil {
		t.Fatal(err)
	}
	const password = "tfo-proof"

	ssl := config.Default(config.RunServer).SSL
	ssl.Cert, ssl.Key, ssl.SessionTicket = certFile, keyFile, o.SessionTickets
	stls, _, err := tlsconf.Server(ssl, nil)
	if err != nil {
		t.Fatal(err)
	}
	sopts := server.Options{
		TLSConfig: stls,
		Users:     users.NewStatic([]string{password}),
		Fallback:  "127.0.0.1:9",
		Dial:      plainDial(p.Server).DialContext,
		Logger:    cmp.Or(o.ServerLog, quiet()),
		OnConn: func(ci server.ConnInfo) {
			r.mu.Lock()
			r.conns = append(r.conns, ci)
			r.mu.Unlock()
		},
	}
	if o.ServerDial {
		sopts.DialFirst = tfoDial(p.Server).DialContext
	}
	srv, err := server.New(sopts)
	if err != nil {
		t.Fatal(err)
	}
	sln := listenIn(t, p.Server, netip.AddrPortFrom(p.ServerAddr.V4, 443).String(), o.ServerListen)
	r.srv = srv
	go func() { _ = srv.Serve(sln) }()
	t.Cleanup(func() { _ = srv.Close() })

	// The client as `fastrojan run` builds it (client.OutboundFromConfig), its sockets made in the
	// client host; the test keeps its own path table (or none) and, with ServerName, its resolver.
	ccfg := config.Default(config.RunClient)
	ccfg.RemoteAddr, ccfg.RemotePort = p.ServerAddr.V4.String(), 443
	ccfg.Password = []string{password}
	ccfg.SSL.Cert, ccfg.SSL.SNI = certFile, "localhost"
	ccfg.TCP.FastOpen = o.ClientTFO
	ccfg.Fastrojan.HandshakeTimeout = config.Duration(5 * time.Second)
	ob, err := client.OutboundFromConfig(ccfg, client.Env{Log: quiet(), Do: p.Client.Do, OnHandshake: func(h outbound.HandshakeInfo) {
		r.mu.Lock()
		r.handshakes = append(r.handshakes, h)
		r.mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	ob.Server = cmp.Or(o.ServerName, ob.Server)
	ob.Resolve, ob.Paths = o.Resolve, o.Paths
	cl, err := client.New(client.Options{Outbound: ob, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	cln := listenIn(t, p.Client, "127.0.0.1:0", false)
	r.socksAddr = cln.Addr().String()
	go func() { _ = cl.Serve(cln) }()
	t.Cleanup(func() { _ = cl.Close() })
	return r
}

// fetch GETs the origin page through SOCKS5 on a new connection and returns the time to the first
// byte of the response.
func (r *rig) fetch(ctx context.Context) (time.Duration, error) {
	socks, err := proxy.SOCKS5("tcp", r.socksAddr, nil, plainDial(r.p.Client))
	if err != nil {
		return 0, err
	}
	tr := &http.Transport{DialContext: socks.(proxy.ContextDialer).DialContext, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	var start, first time.Time
	trace := &httptrace.ClientTrace{GotFirstResponseByte: func() { first = time.Now() }}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, r.url, nil)
	if err != nil {
		return 0, err
	}
	start = time.Now()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK || string(body) != "hello from the origin\n" {
		return 0, fmt.Errorf("origin answered %s %q", resp.Status, body)
	}
	return first.Sub(start), nil
}

// snapshot is the handshake and connection records seen so far.
func (r *rig) snapshot() ([]outbound.HandshakeInfo, []server.ConnInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.handshakes), slices.Clone(r.conns)
}

// counters reads the TFO counters of the four places that matter.
type counters struct {
	clientActive, serverPassive, serverActive, originPassive uint64
	synData, synDataBytes                                    uint64 // client→server SYNs with data
}

func (r *rig) counters(t testing.TB) counters {
	t.Helper()
	get := func(h *netlab.Host, name string) uint64 {
		m, err := h.TcpExt()
		if err != nil {
			t.Fatal(err)
		}
		return m[name]
	}
	st := r.p.Link.AtoB().Stats()
	return counters{
		clientActive:  get(r.p.Client, "TCPFastOpenActive"),
		serverPassive: get(r.p.Server, "TCPFastOpenPassive"),
		serverActive:  get(r.p.Server, "TCPFastOpenActive"),
		originPassive: get(r.p.Origin, "TCPFastOpenPassive"),
		synData:       st.SYNData,
		synDataBytes:  st.SYNDataBytes,
	}
}

func (c counters) sub(o counters) counters {
	return counters{c.clientActive - o.clientActive, c.serverPassive - o.serverPassive,
		c.serverActive - o.serverActive, c.originPassive - o.originPassive,
		c.synData - o.synData, c.synDataBytes - o.synDataBytes}
}

// inRTT returns the median and 99th percentile of ds as multiples of rtt.
func inRTT(ds []time.Duration, rtt time.Duration) (median, p99 float64) {
	s := slices.Clone(ds)
	slices.Sort(s)
	q := func(f float64) float64 { return float64(s[int(f*float64(len(s)-1)+0.5)]) / float64(rtt) }
	return q(0.5), q(0.99)
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }
