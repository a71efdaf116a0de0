package doctor

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/netlab"
	"github.com/fastrojan/fastrojan/internal/tfo"
)

// A server whose TFO queue is full: a second client host holds a half-open TFO connection (its
// link drops every segment without SYN, so the server never sees the final ACK) in a queue of one.
// The probe from the client sees its SYN data refused with the very cookie the server accepted a
// moment before, and says the server's queue overflowed — not the path (the same probe on a path
// that drops SYN data says the path, TestLabProbe). The counters check on the server, reading the
// counters twice, names the recent overflow with the config line and the sysctl that fix it.
func TestLabQueueOverflow(t *testing.T) {
	lab := netlab.New(t)
	var hosts []*netlab.Host
	for _, name := range []string{"client", "server", "holder"} {
		h, err := lab.AddHost(name, netlab.HostOptions{})
		if err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, h)
	}
	client, server, holder := hosts[0], hosts[1], hosts[2]
	link, err := lab.Connect(client, server, netlab.LinkOptions{Delay: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	hlink, err := lab.Connect(holder, server, netlab.LinkOptions{Delay: 5 * time.Millisecond, Faults: netlab.Faults{DropNonSYN: true}})
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.AddrPortFrom(link.AddrB().V4, 443).String()
	tlsServerQueue(t, server, "0.0.0.0:443", 1)

	hold := func() {
		d := &tfo.Dialer{Logger: slog.New(slog.DiscardHandler)}
		to := netip.AddrPortFrom(hlink.AddrB().V4, 443).String()
		for i := range 2 { // the first fetches the cookie, the second holds the slot
			err := holder.Do(func() error {
				c, err := d.DialContext(context.Background(), "tcp", to)
				if err != nil {
					return err
				}
				t.Cleanup(func() { c.Close() })
				if i == 1 {
					_, err = c.Write([]byte{0x16, 0x03, 0x01, 0x01, 0x00})
				}
				return err
			})
			if err != nil {
				panic(err)
			}
		}
		time.Sleep(50 * time.Millisecond) // the SYN with data reaches the server
	}
	probe := &ProbeCheck{Env: envOf(client), Addr: addr, Conns: 4, beforeDial: func(i int) {
		if i == 2 {
			hold()
		}
	}}
	counters := CountersCheck{Env: envOf(server), Window: 3 * time.Second}
	done := make(chan *Report)
	go func() { done <- Run(context.Background(), []Check{counters}, 10*time.Second) }()
	time.Sleep(100 * time.Millisecond) // the counters' first reading
	rep := Run(context.Background(), []Check{probe}, 20*time.Second)
	logReport(t, rep)
	f := findingWith(t, rep, "probe", Warn, "the server's TFO queue overflowed: it refused the SYN data of 2 of 4 connections while accepting the same cookie on 1")
	if !strings.Contains(f.Fix, `"fast_open_qlen"`) || !strings.Contains(f.Fix, "net.core.somaxconn") {
		t.Errorf("probe fix %q", f.Fix)
	}
	if strings.Contains(f.Message, "drops SYNs") {
		t.Errorf("a full queue was blamed on the path: %s", f.Message)
	}

	crep := <-done
	logReport(t, crep)
	f = findingWith(t, crep, "counters", Fail, "the TFO queue overflowed 2 times in the last 3s")
	for _, want := range []string{`"tcp": {"fast_open_qlen": 16384}`, "sysctl -w net.core.somaxconn=16384"} {
		if !strings.Contains(f.Fix, want) {
			t.Errorf("counters fix lacks %q: %q", want, f.Fix)
		}
	}
	if !strings.Contains(strings.Join(crep.Results[0].Lines, "\n"), "SyncookiesSent") {
		t.Errorf("counters do not show SyncookiesSent:\n%s", strings.Join(crep.Results[0].Lines, "\n"))
	}
}
