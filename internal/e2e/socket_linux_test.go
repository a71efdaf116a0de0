package e2e

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fastrojan/fastrojan/internal/netlab"
	"github.com/fastrojan/fastrojan/internal/tfo"
)

// TestSocketActivationTurnsOnTFO emulates systemd's socket activation: a listening socket made
// without TCP Fast Open is handed to the binary as fd 3 (LISTEN_FDS=1, LISTEN_PID its pid), as a
// .socket unit does. The server switches TFO on for it, and the kernel of the lab host proves it:
// TCPFastOpenPassive grows by one for every handshake whose ClientHello rode in the SYN.
func TestSocketActivationTurnsOnTFO(t *testing.T) {
	lab := netlab.New(t)
	h, err := lab.AddHost("sock", netlab.HostOptions{}) // net.ipv4.tcp_fastopen=3: listeners need TCP_FASTOPEN
	if err != nil {
		t.Fatal(err)
	}
	const addr = "127.0.0.1:8443"
	var sock *os.File
	err = h.Do(func() error {
		lc := net.ListenConfig{}
		lc.SetMultipathTCP(false) // systemd's ListenStream= socket is plain TCP
		ln, err := lc.Listen(context.Background(), "tcp", addr)
		if err != nil {
			return err
		}
		defer ln.Close()
		sock, err = ln.(*net.TCPListener).File()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if q, err := unix.GetsockoptInt(int(sock.Fd()), unix.IPPROTO_TCP, unix.TCP_FASTOPEN); err != nil || q != 0 {
		t.Fatalf("the handed-over socket already has TCP_FASTOPEN=%d (%v): the test would prove nothing", q, err)
	}

	dir := t.TempDir()
	cert, key := certFiles(t, dir)
	cfg := writeJSON(t, dir, "server.json", map[string]any{
		"run_type": "server", "local_addr": "0.0.0.0", "local_port": 443, // the socket unit decides the address
		"remote_addr": "127.0.0.1", "remote_port": 81, "password": []string{"socket-activation"},
		"ssl": map[string]any{"cert": cert, "key": key},
		"tcp": map[string]any{"fast_open": true, "fast_open_qlen": 32},
	})
	// sh sets LISTEN_PID to its own pid and execs fastrojan in place, as systemd does for its child.
	p := &proc{cmd: h.Command("sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=fastrojan.socket exec "$0" "$@"`, binary, "-c", cfg),
		done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p, p
	p.cmd.ExtraFiles = []*os.File{sock} // fd 3
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sock.Close()
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.stop(15 * time.Second)
		if t.Failed() {
			t.Logf("fastrojan output:\n%s", p.Output())
		}
	})
	// The inherited socket accepts connections before the server runs: wait for the server to say so.
	waitOutput(t, p, regexp.MustCompile(`server listening`))
	if out := p.Output(); !strings.Contains(out, "listening on the socket systemd handed over") ||
		!strings.Contains(out, "socket_activation=true") {
		t.Fatalf("the server did not take the handed-over socket with TFO:\n%s", out)
	}

	before, err := h.TcpExt()
	if err != nil {
		t.Fatal(err)
	}
	const dials = 5 // the first fetches a cookie, the others carry the ClientHello in the SYN
	accepted := 0
	for i := range dials {
		var c net.Conn
		if err := h.Do(func() (err error) {
			d := &tfo.Dialer{Dialer: net.Dialer{Timeout: 5 * time.Second}}
			c, err = d.DialContext(context.Background(), "tcp", addr)
			return err
		}); err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			t.Fatalf("handshake %d: %v", i, err)
		}
		if tfo.ClientOutcome(c) == tfo.Accepted {
			accepted++
		}
		tc.Close()
	}
	after, err := h.TcpExt()
	if err != nil {
		t.Fatal(err)
	}
	passive := after["TCPFastOpenPassive"] - before["TCPFastOpenPassive"]
	t.Logf("TCPFastOpenPassive +%d, client outcomes accepted %d of %d", passive, accepted, dials)
	if passive < dials-1 || uint64(accepted) != passive {
		t.Fatalf("TCPFastOpenPassive grew by %d and the client saw %d accepted, want %d each: TFO is not on for the handed-over socket",
			passive, accepted, dials-1)
	}
}
