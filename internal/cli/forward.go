package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/fastrojan/fastrojan/internal/client"
	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/inbound"
	"github.com/fastrojan/fastrojan/internal/trojan"
)

// runForward is run_type forward: local_addr:local_port, TCP and UDP, forwarded to
// target_addr:target_port through the server.
func runForward(ctx context.Context, cfg *config.Config, log *slog.Logger, tel *telemetry) error {
	target, err := trojan.ParseAddrString(cfg.TargetHostPort())
	if err != nil {
		return fmt.Errorf("%s: $.target_addr/$.target_port: %w", cfg.Path, err)
	}
	cl, ln, err := buildClient(cfg, log, tel)
	if err != nil {
		return err
	}
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(tcpAddrPort(ln)))
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("listen udp %s: %w", cfg.LocalHostPort(), err)
	}
	log.Info("client listening (forward, TCP and UDP)", "addr", ln.Addr().String(), "target", target.String(), "server", cfg.RemoteHostPort())
	svc := &pairService{
		Client:   cl,
		serveTCP: func(ln net.Listener) error { return cl.ServeForward(ln, target) },
		serveUDP: func() error { return cl.ServeUDPForward(pc, target) },
		udp:      pc,
	}
	return serve(ctx, log, shutdownTimeout(cfg), svc, ln)
}

// runNAT is run_type nat: a transparent proxy for connections nftables redirects to
// local_addr:local_port (original destination from SO_ORIGINAL_DST), and for UDP that nftables'
// tproxy sends to the same port. Linux only.
func runNAT(ctx context.Context, cfg *config.Config, log *slog.Logger, tel *telemetry) error {
	if !inbound.NATSupported {
		return fmt.Errorf("run_type nat needs Linux (netfilter REDIRECT and TPROXY): %w", errors.ErrUnsupported)
	}
	cl, ln, err := buildClient(cfg, log, tel)
	if err != nil {
		return err
	}
	svc := &pairService{Client: cl, serveTCP: cl.ServeNAT}
	pc, err := inbound.ListenTProxyUDP(tcpAddrPort(ln).String())
	if err != nil {
		// TCP still works without it; say what UDP needs.
		log.Warn("nat: UDP transparent proxy unavailable, TCP only", "err", err)
	} else {
		svc.udp = pc
		svc.serveUDP = func() error { return cl.ServeTProxyUDP(pc) }
	}
	log.Info("client listening (nat)", "addr", ln.Addr().String(), "udp", pc != nil, "server", cfg.RemoteHostPort())
	return serve(ctx, log, shutdownTimeout(cfg), svc, ln)
}

func tcpAddrPort(ln net.Listener) netip.AddrPort { return ln.Addr().(*net.TCPAddr).AddrPort() }

// pairService serves a TCP listener and, when set, a UDP socket with one client; it ends when
// either fails or both end (Shutdown and Close end both).
type pairService struct {
	*client.Client
	serveTCP func(net.Listener) error
	serveUDP func() error // nil: TCP only
	udp      net.PacketConn
}

func (p *pairService) Serve(ln net.Listener) error {
	if p.serveUDP == nil {
		return p.serveTCP(ln)
	}
	tcpErr, udpErr := make(chan error, 1), make(chan error, 1)
	go func() { tcpErr <- p.serveTCP(ln) }()
	go func() { udpErr <- p.serveUDP() }()
	select {
	case err := <-tcpErr:
		if err != nil {
			_ = p.udp.Close()
		}
		return errors.Join(err, <-udpErr)
	case err := <-udpErr:
		if err != nil {
			_ = ln.Close()
		}
		terr := <-tcpErr
		if err != nil {
			return err // the TCP error is only the listener we closed
		}
		return terr
	}
}
