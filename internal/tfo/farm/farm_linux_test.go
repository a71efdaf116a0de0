package farm

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/netlab"
	"github.com/fastrojan/fastrojan/internal/tfo"
)

func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		if removed, err := netlab.SweepStale(); err != nil || len(removed) > 0 {
			fmt.Fprintf(os.Stderr, "netlab: swept stale namespaces %v (err %v)\n", removed, err)
		}
	}
	os.Exit(m.Run())
}

// --- TFO sockets from package tfo, created inside lab hosts ---

// listenTFO listens on addr inside h with a TFO queue and MPTCP off.
func listenTFO(t *testing.T, h *netlab.Host, addr string) *net.TCPListener {
	t.Helper()
	var ln *net.TCPListener
	if err := h.Do(func() (err error) {
		ln, err = tfo.Listen(context.Background(), "tcp", addr, 64, discard())
		return err
	}); err != nil {
		t.Fatalf("listen %s in %s: %v", addr, h.Name(), err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// serveEcho echoes every connection on ln until ln closes; accepted counts connections.
func serveEcho(ln net.Listener, accepted *atomic.Int64) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if accepted != nil {
				accepted.Add(1)
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				io.Copy(c, c)
			}()
		}
	}()
}

// tfoExchange dials addr from h with TFO, writes first (the data rides in the SYN when a cookie is
// cached), reads the echo, and returns the outcome the client's kernel reports (TCP_INFO).
func tfoExchange(t *testing.T, h *netlab.Host, addr string) tfo.Outcome {
	t.Helper()
	d := &tfo.Dialer{Dialer: net.Dialer{Timeout: 5 * time.Second}, Logger: discard()}
	var c net.Conn
	if err := h.Do(func() (err error) { c, err = d.DialContext(context.Background(), "tcp", addr); return err }); err != nil {
		t.Fatalf("TFO dial %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	msg := "hello over TFO"
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo %q, %v", got, err)
	}
	return tfo.ClientOutcome(c)
}

func counters(t *testing.T, h *netlab.Host) map[string]uint64 {
	t.Helper()
	m, err := h.TcpExt()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func delta(before, after map[string]uint64, name string) uint64 { return after[name] - before[name] }

// farmLab is one client and two servers that share one address behind an ECMP switch, RTT 20 ms.
type farmLab struct {
	client   *netlab.Host
	servers  [2]*netlab.Host
	link     *netlab.Link
	addr     string // the servers' shared address, port 443
	accepted [2]atomic.Int64
	lns      [2]*net.TCPListener
}

func newFarmLab(t *testing.T) *farmLab {
	t.Helper()
	lab := netlab.New(t)
	client, err := lab.AddHost("client", netlab.HostOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fl := &farmLab{client: client}
	for i, name := range []string{"node-a", "node-b"} {
		if fl.servers[i], err = lab.AddHost(name, netlab.HostOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	fl.link, err = lab.ConnectECMP(client, fl.servers[:], netlab.LinkOptions{Delay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	fl.addr = netip.AddrPortFrom(fl.link.AddrB().V4, 443).String()
	for i, h := range fl.servers {
		fl.lns[i] = listenTFO(t, h, ":443")
		serveEcho(fl.lns[i], &fl.accepted[i])
	}
	return fl
}

// connect sends the next flow to server i and runs one TFO exchange with it.
func (fl *farmLab) connect(t *testing.T, i int) tfo.Outcome {
	t.Helper()
	if err := fl.link.SteerNewFlows(i); err != nil {
		t.Fatal(err)
	}
	before := fl.accepted[i].Load()
	o := tfoExchange(t, fl.client, fl.addr)
	if got := fl.accepted[i].Load(); got != before+1 {
		t.Fatalf("the flow did not land on server %d (accepted %d → %d)", i, before, got)
	}
	return o
}

func (fl *farmLab) serverCounters(t *testing.T) [2]map[string]uint64 {
	return [2]map[string]uint64{counters(t, fl.servers[0]), counters(t, fl.servers[1])}
}

// flips runs n connections after a warm-up on server 0, sending each to the other server than the
// one before, and returns their outcomes and the servers' counter deltas over the n.
func (fl *farmLab) flips(t *testing.T, n int) ([]tfo.Outcome, uint64, uint64) {
	t.Helper()
	if o := fl.connect(t, 0); o != tfo.CookieRequested {
		t.Fatalf("warm-up: %v, want a cookie request (a fresh client has no cookie)", o)
	}
	before := fl.serverCounters(t)
	var out []tfo.Outcome
	for i := range n {
		out = append(out, fl.connect(t, (i+1)%2))
	}
	after := fl.serverCounters(t)
	var passive, fail uint64
	for i := range 2 {
		passive += delta(before[i], after[i], "TCPFastOpenPassive")
		fail += delta(before[i], after[i], "TCPFastOpenPassiveFail")
	}
	return out, passive, fail
}

// TestFarmECMPSharedSecret: two nodes behind one address with the same secret. After one warm-up, 40
// connections alternate between the nodes and every one has its SYN data accepted, by the client's
// TCP_INFO and by the servers' counters.
func TestFarmECMPSharedSecret(t *testing.T) {
	fl := newFarmLab(t)
	for i := range 2 {
		f := mustFarm(t, testSecret, DefaultInterval, DefaultSkew) // each node derives on its own
		r, err := NewRotator(f, []syscall.Conn{fl.lns[i]}, RotatorOptions{Logger: discard()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
	}
	const n = 40
	out, passive, fail := fl.flips(t, n)
	accepted := 0
	for i, o := range out {
		if o == tfo.Accepted {
			accepted++
		} else {
			t.Errorf("connection %d (server %d): %v, want accepted", i, (i+1)%2, o)
		}
	}
	t.Logf("shared secret: %d of %d flipped connections accepted; servers counted Passive +%d, PassiveFail +%d", accepted, n, passive, fail)
	if passive != n || fail != 0 {
		t.Errorf("servers' TcpExt: TCPFastOpenPassive +%d, PassiveFail +%d; want +%d and 0", passive, fail, n)
	}
}

// TestFarmECMPWithoutSecret is the control: each node keeps its kernel's own key, and every flip
// shows "data not accepted". It proves TestFarmECMPSharedSecret can fail.
func TestFarmECMPWithoutSecret(t *testing.T) {
	fl := newFarmLab(t)
	const n = 40
	out, passive, fail := fl.flips(t, n)
	refused := 0
	for i, o := range out {
		if o == tfo.DataNotAccepted {
			refused++
		} else {
			t.Errorf("connection %d (server %d) without a shared secret: %v, want data not accepted", i, (i+1)%2, o)
		}
	}
	t.Logf("no secret: %d of %d flipped connections had their data refused; servers counted Passive +%d, PassiveFail +%d", refused, n, passive, fail)
	if fail != n {
		t.Errorf("servers' TCPFastOpenPassiveFail +%d, want +%d", fail, n)
	}
}

// TestRotationAcrossBoundary drives two nodes' injected clocks through an epoch boundary, one node
// skew ahead of true time and the other skew behind (and the other way round), with a connection to
// each node at every step: all accepted, and the backup key did the work at the boundary. Beyond the
// tolerance the same walk shows a refusal, so the test can fail.
func TestRotationAcrossBoundary(t *testing.T) {
	const skew = DefaultSkew
	cases := []struct {
		name        string
		offsets     [2]time.Duration
		wantRefusal bool
	}{
		{"a ahead, b behind", [2]time.Duration{skew, -skew}, false},
		{"a behind, b ahead", [2]time.Duration{-skew, skew}, false},
		{"beyond the tolerance", [2]time.Duration{3 * skew / 2, -3 * skew / 2}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fl := newFarmLab(t)
			b := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC) // an epoch boundary of the default 24 h
			var clocks [2]*fakeClock
			var rots [2]*Rotator
			for i := range 2 {
				clocks[i] = newFakeClock(b.Add(-4*skew + tc.offsets[i]))
				f := mustFarm(t, testSecret, DefaultInterval, skew)
				r, err := NewRotator(f, []syscall.Conn{fl.lns[i]}, RotatorOptions{Clock: clocks[i], Logger: discard()})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { r.Close() })
				rots[i] = r
			}
			f := mustFarm(t, testSecret, DefaultInterval, skew)
			if o := fl.connect(t, 0); o != tfo.CookieRequested {
				t.Fatalf("warm-up: %v", o)
			}
			before := fl.serverCounters(t)
			accepted, refused := 0, 0
			for T := b.Add(-4 * skew); !T.After(b.Add(4 * skew)); T = T.Add(skew / 2) {
				for i := range 2 {
					clocks[i].Set(T.Add(tc.offsets[i]))
				}
				for i := range 2 {
					want := f.KeysAt(T.Add(tc.offsets[i]))
					waitFor(t, "the rotator to follow its clock", func() bool { return rots[i].Current() == want })
				}
				for _, i := range []int{0, 1} {
					o := fl.connect(t, i)
					if o == tfo.Accepted {
						accepted++
						continue
					}
					refused++
					if !tc.wantRefusal {
						t.Errorf("T = boundary%+v: node %d (clock %+v, epoch %d, backup %d): %v, want accepted",
							T.Sub(b), i, tc.offsets[i], rots[i].Current().Epoch, rots[i].Current().BackupEpoch, o)
					}
				}
			}
			after := fl.serverCounters(t)
			alt := delta(before[0], after[0], "TCPFastOpenPassiveAltKey") + delta(before[1], after[1], "TCPFastOpenPassiveAltKey")
			t.Logf("%s: %d accepted, %d refused across the boundary; servers counted PassiveAltKey +%d", tc.name, accepted, refused, alt)
			if tc.wantRefusal {
				if refused == 0 {
					t.Error("clocks 3 × skew apart: every connection accepted; the walk cannot see a violation")
				}
				return
			}
			if alt == 0 {
				t.Error("TCPFastOpenPassiveAltKey did not move: the walk never needed the backup key")
			}
		})
	}
}

// TestFarmSysctlMatchesSetsockopt: a listener without keys of its own, keyed by the namespace's
// net.ipv4.tcp_fastopen_key set to KeySet.SysctlValue, and a listener keyed by SetKeys accept each
// other's cookies, primary and backup; the same keys written in the other word order do not.
func TestFarmSysctlMatchesSetsockopt(t *testing.T) {
	p := netlab.NewPath(t, netlab.PathOptions{RTT: 2 * time.Millisecond})
	f := mustFarm(t, testSecret, DefaultInterval, DefaultSkew)
	ks := f.KeysAt(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC))
	if err := p.Server.Sysctl(SysctlName, ks.SysctlValue()); err != nil {
		t.Fatal(err)
	}
	if got, err := p.Server.ReadSysctl(SysctlName); err != nil || strings.TrimSpace(got) != ks.SysctlValue() {
		t.Errorf("the kernel reads back %q (%v), want %q", got, err, ks.SysctlValue())
	}
	bySysctl := listenTFO(t, p.Server, ":443") // primary P, backup B from the namespace
	bySockopt := listenTFO(t, p.Server, ":8443")
	if err := SetKeys(bySockopt, ks); err != nil { // primary P, backup B
		t.Fatal(err)
	}
	swapped := listenTFO(t, p.Server, ":9443")
	if err := SetKeys(swapped, KeySet{Primary: ks.Backup, Backup: ks.Primary}); err != nil { // primary B, backup P
		t.Fatal(err)
	}
	for _, ln := range []net.Listener{bySysctl, bySockopt, swapped} {
		serveEcho(ln, nil)
	}
	addr := func(port uint16) string { return netip.AddrPortFrom(p.ServerAddr.V4, port).String() }
	step := func(what string, port uint16, wantAlt uint64, want tfo.Outcome) {
		t.Helper()
		before := counters(t, p.Server)
		o := tfoExchange(t, p.Client, addr(port))
		alt := delta(before, counters(t, p.Server), "TCPFastOpenPassiveAltKey")
		if o != want || alt != wantAlt {
			t.Errorf("%s: %v with PassiveAltKey +%d; want %s with +%d", what, o, alt, want, wantAlt)
		}
	}
	// The client's cookie cache is per server address, so the ports share one cookie.
	step("learn a cookie from the sysctl-keyed listener", 443, 0, tfo.CookieRequested)
	step("present it to the setsockopt-keyed listener (primary)", 8443, 0, tfo.Accepted)
	step("present it where the primary is the backup", 9443, 1, tfo.Accepted) // hands out a cookie of B
	step("present the backup's cookie to the sysctl-keyed listener", 443, 1, tfo.Accepted)

	// The same bytes in big-endian words are other keys: the cookie is refused.
	wrong := func(k Key) string {
		var w []string
		for i := range 4 {
			w = append(w, fmt.Sprintf("%08x", binary.BigEndian.Uint32(k[4*i:])))
		}
		return strings.Join(w, "-")
	}
	if err := p.Server.Sysctl(SysctlName, wrong(ks.Primary)+","+wrong(ks.Backup)); err != nil {
		t.Fatal(err)
	}
	step("big-endian words in the sysctl", 443, 0, tfo.DataNotAccepted)
}
