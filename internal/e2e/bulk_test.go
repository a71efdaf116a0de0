package e2e

import (
	"context"
	be "encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Issue 17: bulk transfers through a client and a server process, fastrojan and its peers side by
// side in one run, with the CPU each process spent per GiB. A newcomer runs
//
//	go test -run '^$' -bench BulkPeers -benchtime 1x ./internal/e2e
//
// and compares the rows of one run: MB/s, client-cpu-s/GiB and server-cpu-s/GiB. trojan-gfw
// (Debian's trojan) is measured when installed, sing-box when a sing-box binary is on PATH (or named
// by FASTROJAN_SINGBOX). FASTROJAN_BULK_MIB sets the size (default 1024).

// bulkOrigin serves transfers: a connection sends 'd' or 'u' and an 8-byte size. For 'd' the origin
// writes size bytes and closes; for 'u' it reads size bytes and answers the count it read (8 bytes),
// with no half-close on the way (trojan-gfw passes none).
func bulkOrigin(tb testing.TB) string {
	tb.Helper()
	return serveTCP(tb, "tcp", "127.0.0.1:0", func(_ context.Context, c net.Conn) { serveBulk(c) })
}

func serveBulk(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Minute))
	var hdr [9]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	size := int64(be.BigEndian.Uint64(hdr[1:]))
	switch hdr[0] {
	case 'd':
		buf := make([]byte, 256<<10)
		for left := size; left > 0; {
			n, err := c.Write(buf[:min(int64(len(buf)), left)])
			left -= int64(n)
			if err != nil {
				return
			}
		}
	case 'u':
		n, _ := io.CopyN(io.Discard, c, size)
		_ = be.Write(c, be.BigEndian, uint64(n))
	}
}

// bulkOnce runs one transfer of size bytes through the SOCKS5 proxy and fails unless every byte
// arrived.
func bulkOnce(b *testing.B, socks, origin string, dir byte, size int64) {
	c, err := socksDialErr(socks, origin)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Minute))
	var hdr [9]byte
	hdr[0] = dir
	be.BigEndian.PutUint64(hdr[1:], uint64(size))
	if _, err := c.Write(hdr[:]); err != nil {
		b.Fatal(err)
	}
	switch dir {
	case 'd':
		n, err := io.Copy(io.Discard, c)
		if err != nil || n != size {
			b.Fatalf("download: %d of %d bytes: %v", n, size, err)
		}
	case 'u':
		buf := make([]byte, 256<<10)
		for left := size; left > 0; {
			n, err := c.Write(buf[:min(int64(len(buf)), left)])
			left -= int64(n)
			if err != nil {
				b.Fatal(err)
			}
		}
		var got uint64
		if err := be.Read(c, be.BigEndian, &got); err != nil || int64(got) != size {
			b.Fatalf("upload: origin read %d of %d bytes: %v", got, size, err)
		}
	}
}

// cpuSeconds is the user+system CPU time a process has used, from /proc/PID/stat.
func cpuSeconds(tb testing.TB, pid int) float64 {
	tb.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Skipf("needs /proc (Linux): %v", err)
	}
	// The command name (field 2) may hold spaces; fields after its closing parenthesis are fixed.
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ is 100 on Linux
}

// bulkPeer is a client and a server process of one implementation, reached through a SOCKS5 port.
type bulkPeer struct {
	name           string
	socks          string
	client, server *proc
}

func startBulkPeers(b *testing.B) []bulkPeer { return startBulkPeersWith(b, false) }

// withFastOpen sets tcp.fast_open in a fastrojan or trojan-gfw config when on.
func withFastOpen(c map[string]any, on bool) {
	if on {
		c["tcp"] = map[string]any{"fast_open": true}
	}
}

// startBulkPeersWith is startBulkPeers with TCP Fast Open turned on in every config when fastOpen is
// set (tcp.fast_open for fastrojan and trojan-gfw, tcp_fast_open for sing-box).
func startBulkPeersWith(b *testing.B, fastOpen bool) []bulkPeer {
	tfo := func(c map[string]any) { withFastOpen(c, fastOpen) }
	p := startPairWith(b, tfo, tfo)
	peers := []bulkPeer{{"fastrojan", p.socks, p.client, p.server}}
	if bin, err := exec.LookPath("trojan"); err == nil {
		peers = append(peers, startGFWPair(b, bin, fastOpen))
	} else {
		b.Logf("trojan-gfw not installed (apt-get install trojan): not measured")
	}
	if singbox := singBoxBin(); singbox != "" {
		peers = append(peers, startSingBoxPair(b, singbox, fastOpen))
	} else {
		b.Logf("no sing-box on PATH (or FASTROJAN_SINGBOX): not measured")
	}
	return peers
}

func startGFWPair(b *testing.B, bin string, fastOpen bool) bulkPeer {
	dir := b.TempDir()
	cert, key := certFiles(b, dir)
	sport, cport := freePort(b), freePort(b)
	sc, cc := serverConfig(sport, "127.0.0.1:9", "s3cret", cert, key), clientConfig(cport, sport, "s3cret", cert)
	withFastOpen(sc, fastOpen)
	withFastOpen(cc, fastOpen)
	srv := start(b, bin, "-c", writeJSON(b, dir, "server.json", sc))
	waitListening(b, srv, fmt.Sprintf("127.0.0.1:%d", sport))
	cli := start(b, bin, "-c", writeJSON(b, dir, "client.json", cc))
	socks := fmt.Sprintf("127.0.0.1:%d", cport)
	waitListening(b, cli, socks)
	return bulkPeer{"trojan-gfw", socks, cli, srv}
}

func startSingBoxPair(b *testing.B, bin string, fastOpen bool) bulkPeer {
	dir := b.TempDir()
	cert, key := certFiles(b, dir)
	sport, cport := freePort(b), freePort(b)
	scfg, ccfg := singBoxConfigs(singBoxSetup{listen: "127.0.0.1", port: sport, socks: cport, cert: cert, key: key,
		password: "s3cret", fastOpen: fastOpen})
	srv := start(b, bin, "run", "-c", writeJSON(b, dir, "sb-server.json", scfg))
	waitListening(b, srv, fmt.Sprintf("127.0.0.1:%d", sport))
	cli := start(b, bin, "run", "-c", writeJSON(b, dir, "sb-client.json", ccfg))
	socks := fmt.Sprintf("127.0.0.1:%d", cport)
	waitListening(b, cli, socks)
	return bulkPeer{"sing-box(" + filepath.Base(bin) + ")", socks, cli, srv}
}

// singBoxBin is the sing-box binary the peer benchmarks run: FASTROJAN_SINGBOX, else sing-box on
// PATH; "" when there is none.
func singBoxBin() string {
	if bin := os.Getenv("FASTROJAN_SINGBOX"); bin != "" {
		return bin
	}
	bin, _ := exec.LookPath("sing-box")
	return bin
}

// singBoxSetup is what a sing-box Trojan server and client pair is configured with.
type singBoxSetup struct {
	listen    string // the server's address (the client dials it)
	port      int    // the server's port
	socks     int    // the client's SOCKS5 port on 127.0.0.1
	cert, key string
	password  string
	fastOpen  bool
	// multiplex: "" without; "default" for sing-box's own default protocol (what a user who turns
	// it on runs); else the protocol ("smux", "yamux", "h2mux").
	multiplex string
}

// singBoxConfigs returns the server's and the client's config for st.
func singBoxConfigs(st singBoxSetup) (server, client map[string]any) {
	in := map[string]any{
		"type": "trojan", "listen": st.listen, "listen_port": st.port, "tcp_fast_open": st.fastOpen,
		"users": []any{map[string]any{"password": st.password}},
		"tls":   map[string]any{"enabled": true, "certificate_path": st.cert, "key_path": st.key},
	}
	out := map[string]any{
		"type": "trojan", "server": st.listen, "server_port": st.port, "password": st.password, "tcp_fast_open": st.fastOpen,
		"tls": map[string]any{"enabled": true, "server_name": "localhost", "certificate_path": st.cert},
	}
	if st.multiplex != "" {
		in["multiplex"] = map[string]any{"enabled": true}
		mux := map[string]any{"enabled": true}
		if st.multiplex != "default" {
			mux["protocol"] = st.multiplex
		}
		out["multiplex"] = mux
	}
	server = map[string]any{
		"log":       map[string]any{"level": "error"},
		"inbounds":  []any{in},
		"outbounds": []any{map[string]any{"type": "direct"}},
	}
	client = map[string]any{
		"log":       map[string]any{"level": "error"},
		"inbounds":  []any{map[string]any{"type": "socks", "listen": "127.0.0.1", "listen_port": st.socks}},
		"outbounds": []any{out},
	}
	return server, client
}

// BenchmarkBulkPeers downloads and uploads FASTROJAN_BULK_MIB (default 1 GiB) through each
// implementation's client and server, interleaved, and reports throughput and the CPU seconds per GiB
// each process spent.
func BenchmarkBulkPeers(b *testing.B) {
	size := int64(1 << 30)
	if v := os.Getenv("FASTROJAN_BULK_MIB"); v != "" {
		mib, err := strconv.Atoi(v)
		if err != nil || mib <= 0 {
			b.Fatalf("FASTROJAN_BULK_MIB=%q: want a positive number of MiB", v)
		}
		size = int64(mib) << 20
	}
	origin := bulkOrigin(b)
	peers := startBulkPeers(b)
	for _, dir := range []byte{'d', 'u'} {
		name := map[byte]string{'d': "download", 'u': "upload"}[dir]
		for _, peer := range peers {
			b.Run(name+"/"+peer.name, func(b *testing.B) {
				bulkOnce(b, peer.socks, origin, dir, 16<<20) // warm-up: buffers, TLS session
				var wall time.Duration
				var ccpu, scpu float64
				for b.Loop() {
					c0, s0 := cpuSeconds(b, peer.client.cmd.Process.Pid), cpuSeconds(b, peer.server.cmd.Process.Pid)
					t0 := time.Now()
					bulkOnce(b, peer.socks, origin, dir, size)
					wall += time.Since(t0)
					ccpu += cpuSeconds(b, peer.client.cmd.Process.Pid) - c0
					scpu += cpuSeconds(b, peer.server.cmd.Process.Pid) - s0
				}
				gib := float64(size) * float64(b.N) / (1 << 30)
				b.ReportMetric(float64(size)*float64(b.N)/1e6/wall.Seconds(), "MB/s")
				b.ReportMetric(ccpu/gib, "client-cpu-s/GiB")
				b.ReportMetric(scpu/gib, "server-cpu-s/GiB")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}
