package bench

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/fastrojan/fastrojan/internal/client"
	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/netlab"
	"github.com/fastrojan/fastrojan/internal/outbound"
	"github.com/fastrojan/fastrojan/internal/server"
	"github.com/fastrojan/fastrojan/internal/tfo"
	"github.com/fastrojan/fastrojan/internal/tlsconf"
	"github.com/fastrojan/fastrojan/internal/users"
	"github.com/fastrojan/fastrojan/internal/website"
)

// Faults a lab run can switch on (bench --lab-fault).
const (
	FaultDropSYNData = "drop-syn-data" // a firewall that drops SYNs carrying data
	FaultStripTFO    = "strip-tfo"     // a middlebox that removes the TFO option
)

// ParseFault checks a --lab-fault value ("" for none).
func ParseFault(s string) (netlab.Faults, error) {
	switch s {
	case "":
		return netlab.Faults{}, nil
	case FaultDropSYNData:
		return netlab.Faults{DropSYNData: true}, nil
	case FaultStripTFO:
		return netlab.Faults{StripTFO: true}, nil
	}
	return netlab.Faults{}, fmt.Errorf("unknown lab fault %q (want %s or %s)", s, FaultDropSYNData, FaultStripTFO)
}

// labServerPort is where the lab's Trojan server listens; the origin serves HTTP on port 80.
const labServerPort = 443

// Lab is a fastrojan server and a web origin running in a netlab Path: the client host reaches the
// server over the emulated link, the server reaches the origin over its own link.
type Lab struct {
	path  *netlab.Path
	fault string
	opts  LabOptions
	queue tfo.QueueInfo // the server listener's queues in force
	srv   *server.Server
	ln    net.Listener
	site  *website.Site
	done  chan error // Serve's result

	url string
	out *outbound.Trojan // the client's dialer to the server, as `fastrojan run` builds it
}

// LabOptions shape the lab's server.
type LabOptions struct {
	Fault string // the fault switched on the client-server link ("" for none; ParseFault)
	// QLen and ExactQLen are the server's tcp.fast_open_qlen (0: the config default, 20) and
	// fastrojan.tfo.exact_qlen: the listener gets the queue a server with that config gets
	// (tfo.QueueLen: a floor raised to the listen backlog, or exactly QLen).
	QLen      int
	ExactQLen bool
	// SSL is the server's "ssl" settings (nil: the default server config's); the certificate is
	// the lab's own whatever SSL names.
	SSL *config.SSL
}

// StartLab starts the server (TFO listener) in p.Server and the origin web site in p.Origin.
// fault names the fault switched on p.Link ("" for none); Close stops both (the caller closes
// the lab). The server's TFO queue is what the default config gets.
func StartLab(p *netlab.Path, fault string, log *slog.Logger) (*Lab, error) {
	return StartLabWith(p, LabOptions{Fault: fault}, log)
}

// StartLabWith is StartLab with the server's queue chosen by opts.
func StartLabWith(p *netlab.Path, opts LabOptions, log *slog.Logger) (*Lab, error) {
	fault := opts.Fault
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	faults, err := ParseFault(fault)
	if err != nil {
		return nil, err
	}
	certPEM, keyPEM, err := tlsconf.GenerateSelfSigned([]string{"fastrojan.lab"})
	if err != nil {
		return nil, fmt.Errorf("lab certificate: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("lab certificate: %w", err)
	}
	pw := make([]byte, 16)
	_, _ = rand.Read(pw)
	password := hex.EncodeToString(pw)

	if opts.QLen <= 0 {
		opts.QLen, _ = config.Default(config.RunServer).TFOQueue()
	}
	l := &Lab{path: p, fault: fault, opts: opts, done: make(chan error, 1)}
	origin := netip.AddrPortFrom(p.OriginAddr.V4, 80)
	if err := p.Origin.Do(func() (err error) { l.site, err = website.Start(origin.String(), log); return err }); err != nil {
		return nil, fmt.Errorf("lab origin: %w", err)
	}
	l.url = "http://" + origin.String() + "/"

	srvAddr := netip.AddrPortFrom(p.ServerAddr.V4, labServerPort)
	err = p.Server.Do(func() (err error) {
		// The queue a server with this config gets (server.FromConfig does the same).
		qlen := tfo.QueueLen(opts.QLen, opts.ExactQLen, tfo.ListenBacklog())
		if l.ln, err = tfo.Listen(context.Background(), "tcp", srvAddr.String(), qlen, log); err != nil {
			return err
		}
		l.queue, _ = tfo.ListenerQueue(l.ln)
		return nil
	})
	if err != nil {
		_ = l.site.Shutdown(context.Background())
		return nil, fmt.Errorf("lab server: %w", err)
	}
	var d net.Dialer
	// TLS as a server with this config has it (session resumption included), with the lab's certificate.
	ssl := config.Default(config.RunServer).SSL
	if opts.SSL != nil {
		ssl = *opts.SSL
	}
	tlsCfg := tlsconf.ServerWith(ssl, func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil }, log)
	l.srv, err = server.New(server.Options{
		TLSConfig: tlsCfg,
		Users:     users.NewStatic([]string{password}),
		Fallback:  origin.String(),
		// Sockets belong to the namespace of the thread that makes them: dial from the server host.
		Dial: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = p.Server.Do(func() error { c, err = d.DialContext(ctx, network, addr); return err })
			return c, err
		},
		Logger: log,
	})
	if err != nil {
		_ = l.ln.Close()
		_ = l.site.Shutdown(context.Background())
		return nil, fmt.Errorf("lab server: %w", err)
	}
	go func() { l.done <- l.srv.Serve(l.ln) }() // owned by Lab: Close stops it and waits
	if l.out, err = labClient(p, srvAddr, password, certPEM); err != nil {
		_ = l.Close()
		return nil, err
	}
	p.Link.SetFaults(faults)
	return l, nil
}

// labClient is the client's dialer to the lab's server, built from a client config as `fastrojan
// run` builds it (TFO on, sockets made in the client host), trusting the lab's certificate.
func labClient(p *netlab.Path, srv netip.AddrPort, password string, certPEM []byte) (*outbound.Trojan, error) {
	dir, err := os.MkdirTemp("", "fastrojan-bench-lab-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir) // read once, below
	cfg := config.Default(config.RunClient)
	cfg.RemoteAddr, cfg.RemotePort = srv.Addr().String(), int(srv.Port())
	cfg.Password = []string{password}
	cfg.SSL.Cert, cfg.SSL.SNI = filepath.Join(dir, "lab.pem"), "fastrojan.lab"
	cfg.TCP.FastOpen = true
	if err := os.WriteFile(cfg.SSL.Cert, certPEM, 0o600); err != nil {
		return nil, err
	}
	return client.OutboundFromConfig(cfg, client.Env{Log: slog.New(slog.DiscardHandler), Do: p.Client.Do})
}

// Options returns bench Options that run from the lab's client host against its server and
// origin; the caller sets N and the rest.
func (l *Lab) Options() Options {
	o := l.out
	return Options{
		Server: o.Server, TLS: o.TLS, Hash: o.Hash, URL: l.url,
		DialTFO: o.DialTFO, DialPlain: o.DialPlain, Paths: o.Paths,
		Do: l.path.Client.Do,
		Counters: func() (client, server map[string]uint64, err error) {
			if client, err = l.path.Client.TcpExt(); err != nil {
				return nil, nil, err
			}
			server, err = l.path.Server.TcpExt()
			return client, server, err
		},
	}
}

// Info describes the lab for the report.
func (l *Lab) Info() *LabInfo {
	return &LabInfo{RTT: l.path.Link.AtoB().Delay() + l.path.Link.BtoA().Delay(), Fault: l.fault,
		Loss: l.path.Link.AtoB().Loss(), QLen: l.opts.QLen, ExactQLen: l.opts.ExactQLen, QueueInForce: l.queue.TFOQueue, Backlog: l.queue.Backlog}
}

// Close stops the server and the origin.
func (l *Lab) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	errs := []error{l.srv.Shutdown(ctx)}
	if err := <-l.done; err != nil && !errors.Is(err, net.ErrClosed) {
		errs = append(errs, err)
	}
	errs = append(errs, l.site.Shutdown(ctx))
	return errors.Join(errs...)
}
