//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/netlab"
)

// natRules is the README's nftables rule set for run_type nat on the machine whose own traffic is
// redirected (output hook), with SERVER_V4, SERVER_V6 and PORT filled in.
const natRules = `table inet fastrojan {
	chain output {
		type nat hook output priority -100; policy accept;
		ip daddr { 127.0.0.0/8, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 169.254.0.0/16, 224.0.0.0/4 } return
		ip6 daddr { ::1, fc00::/7, fe80::/10, ff00::/8 } return
		ip daddr SERVER_V4 return
		ip6 daddr SERVER_V6 return
		meta l4proto tcp redirect to :PORT
	}
}
`

// nftPath returns nft's path, or skips saying what to install (.ci/run installs nftables; tests
// install nothing themselves).
func nftPath(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("nft")
	if err != nil {
		t.Skip("nat test needs nft on PATH (Debian: apt-get install nftables; .ci/run installs it)")
	}
	return p
}

// natStart runs cmd (made by Host.Command) like start does; at cleanup it gets SIGTERM.
func natStart(t testing.TB, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{cmd: cmd, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", cmd.Args, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%v output:\n%s", cmd.Args, p.Output())
		}
	})
	return p
}

// natWaitListening waits until addr accepts TCP connections from inside h.
func natWaitListening(t testing.TB, h *netlab.Host, p *proc, addr string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		err := h.Do(func() error {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err == nil {
			return
		}
		select {
		case <-p.done:
			t.Fatalf("process exited before listening on %s: %v\n%s", addr, p.err, p.Output())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("nothing listening on %s after 15 s\n%s", addr, p.Output())
}

func natRun(t testing.TB, h *netlab.Host, name string, args ...string) {
	t.Helper()
	if out, err := h.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), h.Name(), err, out)
	}
}

// TestNATRedirectsCurlThroughTheServer: in a lab where the client host has no path to the origin but
// through the Trojan server, nftables redirects a plain curl (IPv4 and IPv6) to a nat-mode client,
// which finds the original destination and tunnels; the origin sees the request coming from the
// server.
func TestNATRedirectsCurlThroughTheServer(t *testing.T) {
	curl := curlPath(t)
	p := netlab.NewPath(t, netlab.PathOptions{RTT: 2 * time.Millisecond}) // skips unless root
	nft := nftPath(t)

	// The origin: a web page that says who asked.
	var lns []net.Listener
	for _, a := range []netip.Addr{p.OriginAddr.V4, p.OriginAddr.V6} {
		err := p.Origin.Do(func() error {
			ln, err := net.Listen("tcp", netip.AddrPortFrom(a, 8080).String())
			lns = append(lns, ln)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	site := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprintf(w, "origin saw %s ask for %s", host, r.URL.Path)
	})}
	for _, ln := range lns {
		go site.Serve(ln)
	}
	t.Cleanup(func() { site.Shutdown(context.Background()) })

	dir := t.TempDir()
	cert, key := certFiles(t, dir)
	scfg := serverConfig(443, "127.0.0.1:1", "nat-pw", cert, key)
	scfg["local_addr"] = "::"
	server := natStart(t, p.Server.Command(binary, "-c", writeJSON(t, dir, "server.json", scfg)))
	serverV4 := netip.AddrPortFrom(p.ServerAddr.V4, 443).String()
	natWaitListening(t, p.Client, server, serverV4)

	const natPort = 12345
	ccfg := clientConfig(natPort, 443, "nat-pw", cert)
	ccfg["run_type"], ccfg["local_addr"], ccfg["remote_addr"] = "nat", "::", p.ServerAddr.V4.String()
	client := natStart(t, p.Client.Command(binary, "-c", writeJSON(t, dir, "client.json", ccfg)))
	natWaitListening(t, p.Client, client, fmt.Sprintf("127.0.0.1:%d", natPort))

	// The client host routes the origin's addresses out of its only link (the server does not
	// forward them), so without the redirect curl gets nowhere.
	natRun(t, p.Client, "ip", "route", "add", p.OriginAddr.V4.String()+"/32", "dev", p.Link.Interface())
	natRun(t, p.Client, "ip", "-6", "route", "add", p.OriginAddr.V6.String()+"/128", "dev", p.Link.Interface())
	rules := strings.NewReplacer("SERVER_V4", p.ServerAddr.V4.String(), "SERVER_V6", p.ServerAddr.V6.String(),
		"PORT", fmt.Sprint(natPort)).Replace(natRules)
	cmd := p.Client.Command(nft, "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f:\n%s\n%v\n%s", rules, err, out)
	}

	for _, c := range []struct {
		url, via string
	}{
		{fmt.Sprintf("http://%s:8080/nat-v4", p.OriginAddr.V4), p.OriginLink.AddrA().V4.String()},
		{fmt.Sprintf("http://[%s]:8080/nat-v6", p.OriginAddr.V6), p.OriginLink.AddrA().V6.String()},
	} {
		out, err := p.Client.Command(curl, "-sS", "--max-time", "15", c.url).CombinedOutput()
		path := c.url[strings.LastIndex(c.url, "/"):]
		want := fmt.Sprintf("origin saw %s ask for %s", c.via, path)
		if err != nil || string(out) != want {
			t.Fatalf("curl %s in the client host: %v\n%s\nwant %q", c.url, err, out, want)
		}
	}
}

// natUDPRules is the README's nftables rule set for UDP in run_type nat on the machine whose own
// datagrams are diverted: the output chain marks them, policy routing (see natUDPRoutes) sends marked
// packets back in through lo, and the prerouting chain hands them to the client's TPROXY socket.
const natUDPRules = `table inet fastrojan_udp {
	chain output {
		type route hook output priority mangle; policy accept;
		ip daddr { 127.0.0.0/8, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 169.254.0.0/16, 224.0.0.0/4 } return
		ip6 daddr { ::1, fc00::/7, fe80::/10, ff00::/8 } return
		fib daddr type local return
		meta l4proto udp meta mark set 1
	}
	chain prerouting {
		type filter hook prerouting priority mangle; policy accept;
		meta mark 1 meta l4proto udp tproxy ip to 127.0.0.1:PORT
		meta mark 1 meta l4proto udp tproxy ip6 to [::1]:PORT
	}
}
`

// natUDPRoutes deliver marked packets locally, so the prerouting chain sees them.
var natUDPRoutes = [][]string{
	{"ip", "rule", "add", "fwmark", "1", "lookup", "100"},
	{"ip", "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100"},
	{"ip", "-6", "rule", "add", "fwmark", "1", "lookup", "100"},
	{"ip", "-6", "route", "add", "local", "::/0", "dev", "lo", "table", "100"},
}

// TestNATUDPWithTProxy: nftables' tproxy diverts an application's datagrams (IPv4 and IPv6) to the
// nat-mode client, which reads their original destination from the control messages and sends
// them through the server; the replies come back from the address the application sent to (its
// connected socket accepts nothing else).
func TestNATUDPWithTProxy(t *testing.T) {
	p := netlab.NewPath(t, netlab.PathOptions{RTT: 2 * time.Millisecond}) // skips unless root
	nft := nftPath(t)

	// The origin echoes datagrams, prefixed with the address it saw them from.
	for _, a := range []netip.Addr{p.OriginAddr.V4, p.OriginAddr.V6} {
		var pc *net.UDPConn
		err := p.Origin.Do(func() (err error) {
			pc, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 5353)))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		go func() {
			buf := make([]byte, 64<<10)
			for {
				n, from, err := pc.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				reply := append([]byte(from.Addr().Unmap().String()+" "), buf[:n]...)
				_, _ = pc.WriteToUDPAddrPort(reply, from)
			}
		}()
	}

	dir := t.TempDir()
	cert, key := certFiles(t, dir)
	scfg := serverConfig(443, "127.0.0.1:1", "nat-pw", cert, key)
	scfg["local_addr"] = "::"
	server := natStart(t, p.Server.Command(binary, "-c", writeJSON(t, dir, "server.json", scfg)))
	natWaitListening(t, p.Client, server, netip.AddrPortFrom(p.ServerAddr.V4, 443).String())

	const natPort = 12346
	ccfg := clientConfig(natPort, 443, "nat-pw", cert)
	ccfg["run_type"], ccfg["local_addr"], ccfg["remote_addr"] = "nat", "::", p.ServerAddr.V4.String()
	client := natStart(t, p.Client.Command(binary, "-c", writeJSON(t, dir, "client.json", ccfg)))
	natWaitListening(t, p.Client, client, fmt.Sprintf("127.0.0.1:%d", natPort))

	natRun(t, p.Client, "ip", "route", "add", p.OriginAddr.V4.String()+"/32", "dev", p.Link.Interface())
	natRun(t, p.Client, "ip", "-6", "route", "add", p.OriginAddr.V6.String()+"/128", "dev", p.Link.Interface())
	for _, r := range natUDPRoutes {
		natRun(t, p.Client, r[0], r[1:]...)
	}
	rules := strings.NewReplacer("PORT", fmt.Sprint(natPort)).Replace(natUDPRules)
	cmd := p.Client.Command(nft, "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f:\n%s\n%v\n%s", rules, err, out)
	}

	for _, c := range []struct {
		dst netip.Addr
		via netip.Addr
	}{{p.OriginAddr.V4, p.OriginLink.AddrA().V4}, {p.OriginAddr.V6, p.OriginLink.AddrA().V6}} {
		var conn net.Conn
		err := p.Client.Do(func() (err error) {
			conn, err = net.Dial("udp", netip.AddrPortFrom(c.dst, 5353).String())
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for i := range 3 {
			msg := fmt.Sprintf("datagram %d to %s", i, c.dst)
			conn.Write([]byte(msg))
			buf := make([]byte, 1500)
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, err := conn.Read(buf)
			want := c.via.String() + " " + msg
			if err != nil || string(buf[:n]) != want {
				t.Fatalf("udp to %s through nat: got %q, %v; want %q", c.dst, buf[:n], err, want)
			}
		}
	}
}
