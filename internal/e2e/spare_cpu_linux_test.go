package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// procCPU returns the user plus system CPU time the process pid has used.
func procCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64) // fields 14 and 15 of stat, counted after the name
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// BenchmarkServerCPUPerSpare measures the server's CPU for the spares a client opens: a TLS
// handshake (X25519, ECDSA P-256 certificate, as the client and `fastrojan server` use), a silent
// wait, and a close_notify when the pool retires it; fresh and resumed sessions. Reported per 1000
// spares:
//
//	go test -run '^$' -bench ServerCPUPerSpare -benchtime 1000x ./internal/e2e
func BenchmarkServerCPUPerSpare(b *testing.B) {
	dir := b.TempDir()
	cert, key := certFiles(b, dir)
	port := freePort(b)
	srv := start(b, binary, "-c", writeJSON(b, dir, "server.json", serverConfig(port, "127.0.0.1:9", "cpu", cert, key)))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitListening(b, srv, addr)
	pem, _ := os.ReadFile(cert)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	for _, resumed := range []bool{false, true} {
		b.Run(fmt.Sprintf("resumed=%v", resumed), func(b *testing.B) {
			cfg := &tls.Config{RootCAs: roots, ServerName: "localhost", CurvePreferences: []tls.CurveID{tls.X25519}}
			if resumed {
				cfg.ClientSessionCache = tls.NewLRUClientSessionCache(16)
				c, err := tls.Dial("tcp", addr, cfg)
				if err != nil {
					b.Fatal(err)
				}
				c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
				c.Read(make([]byte, 1)) // take the session ticket
				c.Close()
			}
			time.Sleep(100 * time.Millisecond)
			before := procCPU(b, srv.cmd.Process.Pid)
			b.ResetTimer()
			didResume := 0
			for range b.N {
				c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
				if err != nil {
					b.Fatal(err)
				}
				if c.ConnectionState().DidResume {
					didResume++
				}
				if resumed {
					c.SetReadDeadline(time.Now().Add(time.Millisecond))
					c.Read(make([]byte, 1))
				}
				c.Close()
			}
			if want := map[bool]int{false: 0, true: b.N}[resumed]; didResume != want {
				b.Errorf("%d of %d handshakes resumed, want %d (the default config: reuse_session on)", didResume, b.N, want)
			}
			b.StopTimer()
			time.Sleep(300 * time.Millisecond) // the server finishes the last closes
			used := procCPU(b, srv.cmd.Process.Pid) - before
			b.ReportMetric(float64(used)/float64(time.Millisecond)*1000/float64(b.N), "server-cpu-ms/1000-spares")
			b.ReportMetric(0, "ns/op")
		})
	}
}
