package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
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
	// All tunnels come from 127.0.0.1: lift the per-address limit (fastrojan.max_conns_per_ip).
	// The metrics show where the memory is: goroutine stacks or heap.
	smetrics, cmetrics := fmt.Sprintf("127.0.0.1:%d", freePort(b)), fmt.Sprintf("127.0.0.1:%d", freePort(b))
	p := startPairWith(b, func(s map[string]any) {
		s["fastrojan"] = map[string]any{"max_conns_per_ip": 2 * tunnels, "metrics_listen": smetrics, "pprof": true}
	}, func(c map[string]any) {
		c["fastrojan"] = map[string]any{"metrics_listen": cmetrics, "pprof": true}
	})
	origin := startEchoOrigin(b, "tcp", "127.0.0.1:0")
	warm := idleTunnels(b, p.socks, origin, 10) // lazy initialisation belongs to the baseline
	time.Sleep(300 * time.Millisecond)
	srv0, cli0 := rssKiB(b, p.server.cmd.Process.Pid), rssKiB(b, p.client.cmd.Process.Pid)
	sm0, cm0 := memStats(b, smetrics), memStats(b, cmetrics)
	conns := idleTunnels(b, p.socks, origin, tunnels)
	// FASTROJAN_IDLE_WAIT (e.g. 130s) measures later instead: after the runtime's periodic garbage
	// collection (every 2 minutes when nothing else triggers one), which frees the garbage of the
	// tunnels' setup and shrinks the goroutine stacks the setup grew.
	wait := time.Second
	if v := os.Getenv("FASTROJAN_IDLE_WAIT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("FASTROJAN_IDLE_WAIT=%q: %v", v, err)
		}
		wait = d
	}
	time.Sleep(wait)
	srv1, cli1 := rssKiB(b, p.server.cmd.Process.Pid), rssKiB(b, p.client.cmd.Process.Pid)
	sm1, cm1 := memStats(b, smetrics), memStats(b, cmetrics)
	if dir := os.Getenv("FASTROJAN_IDLE_PPROF"); dir != "" { // where the memory is, per process
		saveProfile(b, smetrics, filepath.Join(dir, "server-heap.pprof"))
		saveProfile(b, cmetrics, filepath.Join(dir, "client-heap.pprof"))
	}
	for _, side := range []struct {
		name   string
		m0, m1 [2]float64
	}{{"server", sm0, sm1}, {"client", cm0, cm1}} {
		b.ReportMetric((side.m1[0]-side.m0[0])/1024/tunnels, side.name+"-stack-KiB/tunnel")
		b.ReportMetric((side.m1[1]-side.m0[1])/1024/tunnels, side.name+"-heap-KiB/tunnel")
	}
	b.ReportMetric((srv1-srv0)/tunnels, "server-KiB/tunnel")
	b.ReportMetric((cli1-cli0)/tunnels, "client-KiB/tunnel")
	for _, c := range append(conns, warm...) {
		c.Close()
	}
}

// memStats scrapes a process's metrics for the Go runtime's stack and heap in use, in bytes.
func memStats(tb testing.TB, addr string) [2]float64 {
	tb.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		tb.Fatalf("scrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return [2]float64{metric(string(body), "go_memstats_stack_inuse_bytes"), metric(string(body), "go_memstats_heap_inuse_bytes")}
}

// saveProfile writes the heap profile a process serves (fastrojan.pprof) to file.
func saveProfile(tb testing.TB, addr, file string) {
	tb.Helper()
	resp, err := http.Get("http://" + addr + "/debug/pprof/heap")
	if err != nil {
		tb.Fatalf("heap profile from %s: %v", addr, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if err := os.WriteFile(file, body, 0o644); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("heap profile: go tool pprof -sample_index=inuse_space -top %s", file)
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
