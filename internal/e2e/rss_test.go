package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// rssKiB reads a process's resident set size from /proc.
func rssKiB(tb testing.TB, pid int) float64 {
	tb.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Skipf("needs /proc (Linux): %v", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			v, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return v
		}
	}
	tb.Fatal("no VmRSS")
	return 0
}

// BenchmarkIdleTunnelRSS opens 2000 idle tunnels through the real server and client processes and
// reports the resident memory each tunnel costs in each process.
//
//	go test -run '^$' -bench IdleTunnelRSS -benchtime 1x ./internal/e2e
func BenchmarkIdleTunnelRSS(b *testing.B) {
	const tunnels = 2000
	p := startPair(b)
	origin := startEchoOrigin(b, "tcp", "127.0.0.1:0")
	warm := idleTunnels(b, p.socks, origin, 10) // lazy initialisation belongs to the baseline
	time.Sleep(300 * time.Millisecond)
	srv0, cli0 := rssKiB(b, p.server.cmd.Process.Pid), rssKiB(b, p.client.cmd.Process.Pid)
	conns := idleTunnels(b, p.socks, origin, tunnels)
	time.Sleep(time.Second)
	srv1, cli1 := rssKiB(b, p.server.cmd.Process.Pid), rssKiB(b, p.client.cmd.Process.Pid)
	b.ReportMetric((srv1-srv0)/tunnels, "server-KiB/tunnel")
	b.ReportMetric((cli1-cli0)/tunnels, "client-KiB/tunnel")
	for _, c := range append(conns, warm...) {
		c.Close()
	}
}

// idleTunnels opens n tunnels to a holding origin, each with one exchanged byte, and returns them.
func idleTunnels(tb testing.TB, socks, origin string, n int) []net.Conn {
	conns := make([]net.Conn, 0, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	var firstErr error
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := socksDialErr(socks, origin)
			if err == nil {
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				_, err = c.Write([]byte{1})
				if err == nil {
					_, err = c.Read(make([]byte, 1))
				}
				_ = c.SetDeadline(time.Time{})
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			conns = append(conns, c)
		}()
	}
	wg.Wait()
	if firstErr != nil {
		tb.Fatalf("opening tunnels: %v", firstErr)
	}
	return conns
}
