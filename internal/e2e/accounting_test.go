package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	binenc "encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/trojan"
	"github.com/fastrojan/fastrojan/internal/users"
	"github.com/fastrojan/fastrojan/internal/users/userdb/testdb"
)

// The user-store suite runs the real binary against a real database: MariaDB (two server processes
// sharing it) and SQLite (one process: an SQLite file is local to one machine).

// acctEnv is a database, a counting sink as the target, a fallback site, and a certificate.
type acctEnv struct {
	t          *testing.T
	db         *testdb.DB
	dir        string
	cert, key  string
	sink       string // host:port of the sink
	fallback   string // host:port of the fallback site
	dbAddrOver string // if set, the server reaches MySQL here instead (a latency proxy)
	flush      string // flush interval; default 1s
}

func newAcctEnv(t *testing.T, db *testdb.DB) *acctEnv {
	e := &acctEnv{t: t, db: db, dir: t.TempDir()}
	e.cert, e.key = certFiles(t, e.dir)
	e.sink = startSink2(t)
	e.fallback = startFallbackSite(t)
	return e
}

// config is a server config using the database; journal "" means none.
func (e *acctEnv) config(port int, journal string) map[string]any {
	host, fp, _ := net.SplitHostPort(e.fallback)
	fport, _ := strconv.Atoi(fp)
	flush := e.flush
	if flush == "" {
		flush = "1s"
	}
	userCfg := map[string]any{"refresh": "300ms", "flush": flush, "journal": journal}
	c := map[string]any{
		"run_type":    "server",
		"local_addr":  "127.0.0.1",
		"local_port":  port,
		"remote_addr": host,
		"remote_port": fport,
		"password":    []string{},
		"log_level":   1,
		"ssl":         map[string]any{"cert": e.cert, "key": e.key},
		"fastrojan":   map[string]any{"users": userCfg, "shutdown_timeout": "30s"},
	}
	if e.db.Kind == "mysql" {
		addr := e.db.MySQL.Addr
		if e.dbAddrOver != "" {
			addr = e.dbAddrOver
		}
		h, p, _ := net.SplitHostPort(addr)
		pn, _ := strconv.Atoi(p)
		c["mysql"] = map[string]any{"enabled": true, "server_addr": h, "server_port": pn,
			"database": e.db.MySQL.Database, "username": e.db.MySQL.Username, "password": e.db.MySQL.Password}
	} else {
		userCfg["sqlite"] = e.db.SQLite
	}
	return c
}

// server starts the binary on port and waits until it listens.
func (e *acctEnv) server(name string, port int, journal string) *proc {
	e.t.Helper()
	cfg := writeJSON(e.t, e.dir, name+".json", e.config(port, journal))
	p := start(e.t, binary, "-c", cfg)
	waitListening(e.t, p, fmt.Sprintf("127.0.0.1:%d", port))
	return p
}

// The sink protocol: the client's payload starts with 16 bytes, the total upload length and the
// download length wanted. The sink reads until EOF, checks the upload length, then sends the
// download and closes. A download length of 1<<62 streams until the connection breaks.
const streamForever = 1 << 62

func startSink2(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveSink(c.(*net.TCPConn))
		}
	}()
	return ln.Addr().String()
}

func serveSink(c *net.TCPConn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
	var hdr [16]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	up, down := int64(binenc.BigEndian.Uint64(hdr[:8])), int64(binenc.BigEndian.Uint64(hdr[8:]))
	buf := make([]byte, 32<<10)
	if down == streamForever {
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}
	n, err := io.Copy(io.Discard, c)
	if err != nil || n+16 != up {
		_ = c.SetLinger(0) // a reset: the client must notice
		return
	}
	for down > 0 {
		m, err := c.Write(buf[:min(int64(len(buf)), down)])
		if err != nil {
			return
		}
		down -= int64(m)
	}
}

// startFallbackSite answers anything with "FALLBACK" and closes.
func startFallbackSite(t testing.TB) string { return startReplier(t, "FALLBACK") }

// startReplier is a TCP server that writes reply as soon as a byte arrives, then closes.
func startReplier(t testing.TB, reply string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				b := make([]byte, 1)
				if _, err := c.Read(b); err == nil {
					_, _ = io.WriteString(c, reply)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// errNotStarted marks a transfer that failed before the request was sent: nothing was counted.
var errNotStarted = errors.New("connection failed before the request")

// dialTrojan completes TLS with server and returns the connection, or errNotStarted.
func dialTrojan(server string) (*tls.Conn, error) {
	d := &net.Dialer{Timeout: 3 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", server, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNotStarted, err)
	}
	return c, nil
}

func request(pw, dest string, payload []byte) []byte {
	a, err := trojan.ParseAddrString(dest)
	if err != nil {
		panic(err)
	}
	b, err := trojan.AppendRequest(nil, trojan.Request{Hash: trojan.HashPassword(pw), Cmd: trojan.CmdConnect, Dest: a})
	if err != nil {
		panic(err)
	}
	return append(b, payload...)
}

// transfer moves up bytes to the sink and down bytes back as user pw through server, and checks both
// arrived whole.
func transfer(server, pw, sink string, up, down int64) error {
	c, err := dialTrojan(server)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	payload := make([]byte, up)
	binenc.BigEndian.PutUint64(payload[:8], uint64(up))
	binenc.BigEndian.PutUint64(payload[8:16], uint64(down))
	first := min(int64(len(payload)), 4096)
	werr := make(chan error, 1)
	go func() {
		if _, err := c.Write(request(pw, sink, payload[:first])); err != nil {
			werr <- err
			return
		}
		if _, err := c.Write(payload[first:]); err != nil {
			werr <- err
			return
		}
		werr <- c.CloseWrite()
	}()
	n, rerr := io.Copy(io.Discard, c)
	if err := <-werr; err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	if rerr != nil {
		return fmt.Errorf("download: %w after %d bytes", rerr, n)
	}
	if n != down {
		return fmt.Errorf("downloaded %d bytes, want %d", n, down)
	}
	return nil
}

// usage is a user's ground truth.
type usage struct{ down, up int64 }

// TestAccountingGroundTruth: several users move known byte counts both ways over many connections;
// one server is stopped with SIGTERM mid-transfer and restarted; the database is unavailable for a
// while mid-run. At the end the users table holds exactly the bytes that moved.
//
// MariaDB: two server processes share the database, which is stopped for 30 s. SQLite: one process
// (an SQLite file is local to its machine), and the "outage" is another writer holding the file's
// write lock for 10 s.
func TestAccountingGroundTruth(t *testing.T) {
	t.Run("mysql", func(t *testing.T) {
		stop, startDB := testdb.Outage(t) // first: it waits for other tests using the server
		db := testdb.MySQL(t)
		groundTruth(t, db, 2, 30*time.Second, func() func() { stop(); return startDB })
	})
	t.Run("sqlite", func(t *testing.T) {
		db := testdb.SQLite(t)
		groundTruth(t, db, 1, 10*time.Second, func() func() { return lockSQLiteFile(t, db) })
	})
}

func groundTruth(t *testing.T, db *testdb.DB, nServers int, outage time.Duration, down func() (up func())) {
	e := newAcctEnv(t, db)
	pws := []string{"pw-ann", "pw-bob", "pw-cid", "pw-dee"}
	for i, pw := range pws {
		db.AddUser(t, "user"+strconv.Itoa(i), pw, -1)
	}
	type srv struct {
		addr, journal string
		port          int
		p             atomic.Pointer[proc]
		inflight      atomic.Int64 // transfers under way through this server
	}
	servers := make([]*srv, nServers)
	for i := range servers {
		s := &srv{port: freePort(t), journal: fmt.Sprintf("%s/journal-%d.json", e.dir, i)}
		s.addr = fmt.Sprintf("127.0.0.1:%d", s.port)
		s.p.Store(e.server("server"+strconv.Itoa(i), s.port, s.journal))
		servers[i] = s
	}

	var (
		mu       sync.Mutex
		truth    = map[string]*usage{}
		conns    atomic.Int64
		failures []error
		stopping atomic.Bool
		wg       sync.WaitGroup
	)
	for _, pw := range pws {
		truth[pw] = &usage{}
	}
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 42))
			for i := 0; !stopping.Load(); i++ {
				pw := pws[(w+i)%len(pws)]
				up := 16 + r.Int64N(200<<10)
				dn := r.Int64N(600 << 10)
				s := servers[(w+i)%len(servers)]
				s.inflight.Add(1)
				err := transfer(s.addr, pw, e.sink, up, dn)
				s.inflight.Add(-1)
				if errors.Is(err, errNotStarted) {
					time.Sleep(50 * time.Millisecond) // that server is restarting: nothing was counted
					continue
				}
				if err != nil {
					mu.Lock()
					failures = append(failures, fmt.Errorf("%s via %s: %w", pw, s.addr, err))
					mu.Unlock()
					continue
				}
				conns.Add(1)
				mu.Lock()
				truth[pw].up += up
				truth[pw].down += dn
				mu.Unlock()
			}
		}()
	}

	time.Sleep(2 * time.Second)
	// SIGTERM mid-transfer: the server drains its open connections, writes its counts, exits 0.
	before := conns.Load()
	s0 := servers[0]
	for s0.inflight.Load() == 0 { // make sure the SIGTERM lands mid-transfer
		time.Sleep(time.Millisecond)
	}
	if err := s0.p.Load().stop(40 * time.Second); err != nil {
		t.Fatalf("server 0 after SIGTERM: %v\n%s", err, s0.p.Load().Output())
	}
	t.Logf("server 0 stopped by SIGTERM after %d transfers; restarting", before)
	s0.p.Store(e.server("server0-again", s0.port, s0.journal))

	time.Sleep(time.Second)
	restore := down()
	t.Logf("database unavailable for %v", outage)
	time.Sleep(outage)
	restore()
	t.Log("database back")
	time.Sleep(3 * time.Second)
	stopping.Store(true)
	wg.Wait()
	for _, s := range servers {
		if err := s.p.Load().stop(40 * time.Second); err != nil {
			t.Fatalf("%s after SIGTERM: %v\n%s", s.addr, err, s.p.Load().Output())
		}
	}
	for _, err := range failures {
		t.Error(err)
	}
	if conns.Load() < 50 {
		t.Errorf("only %d transfers completed", conns.Load())
	}
	var total int64
	for _, pw := range pws {
		down, up := db.Usage(t, pw)
		w := truth[pw]
		total += w.down + w.up
		if down != w.down || up != w.up {
			t.Errorf("%s: table says download %d upload %d; ground truth %d / %d (off by %d / %d)",
				pw, down, up, w.down, w.up, down-w.down, up-w.up)
		}
	}
	t.Logf("%d transfers, %d MB, %d servers: every byte counted once", conns.Load(), total>>20, nServers)
}

// lockSQLiteFile takes the SQLite file's write lock from the test, as a stand-in for an outage:
// every write by the server fails until the returned func releases it.
func lockSQLiteFile(t testing.TB, db *testdb.DB) func() {
	ctx := context.Background()
	conn, err := db.Admin.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release := func() {
		once.Do(func() {
			_, _ = conn.ExecContext(ctx, "ROLLBACK")
			_ = conn.Close()
		})
	}
	t.Cleanup(release)
	return release
}

// TestQuotaAndDeletionCutConnections: a user crossing its quota mid-connection, and a user deleted
// while connected, lose the connection within 5 s; their new connections get the fallback site.
func TestQuotaAndDeletionCutConnections(t *testing.T) {
	for _, kind := range []string{"mysql", "sqlite"} {
		t.Run(kind, func(t *testing.T) {
			var db *testdb.DB
			if kind == "mysql" {
				db = testdb.MySQL(t)
			} else {
				db = testdb.SQLite(t)
			}
			e := newAcctEnv(t, db)
			const quota = 8 << 20
			db.AddUser(t, "limited", "pw-limited", quota)
			db.AddUser(t, "doomed", "pw-doomed", -1)
			port := freePort(t)
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			e.server("server", port, "")

			// Over quota: a download that never ends on its own.
			c, err := dialTrojan(addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			hdr := make([]byte, 16)
			binenc.BigEndian.PutUint64(hdr[:8], 16)
			binenc.BigEndian.PutUint64(hdr[8:], streamForever)
			if _, err := c.Write(request("pw-limited", e.sink, hdr)); err != nil {
				t.Fatal(err)
			}
			var got int64
			var crossed time.Time
			buf := make([]byte, 64<<10)
			for {
				n, err := c.Read(buf)
				got += int64(n)
				if crossed.IsZero() && got+16 >= quota {
					crossed = time.Now()
				}
				if err != nil {
					break
				}
			}
			if crossed.IsZero() {
				t.Fatalf("connection ended after %d bytes, before the quota of %d", got, quota)
			}
			if d := time.Since(crossed); d > 5*time.Second {
				t.Errorf("over-quota connection cut %v after crossing the quota; want within 5 s", d)
			} else {
				t.Logf("over-quota connection cut %v after crossing the quota (%d bytes over)", d.Round(time.Millisecond), got+16-quota)
			}
			expectFallback(t, addr, "pw-limited")

			// Deleted while connected: a stream that would go on for ever.
			c2, err := dialTrojan(addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c2.Close()
			_ = c2.SetDeadline(time.Now().Add(30 * time.Second))
			if _, err := c2.Write(request("pw-doomed", e.sink, hdr)); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c2, buf[:1000]); err != nil {
				t.Fatal(err)
			}
			ended := make(chan time.Time, 1)
			go func() { _, _ = io.Copy(io.Discard, c2); ended <- time.Now() }()
			deleted := time.Now()
			db.Exec(t, "DELETE FROM users WHERE username = 'doomed'")
			select {
			case at := <-ended:
				t.Logf("deleted user's connection cut %v after the DELETE", at.Sub(deleted).Round(time.Millisecond))
			case <-time.After(5 * time.Second):
				t.Fatal("deleted user's connection still open 5 s after the DELETE")
			}
			expectFallback(t, addr, "pw-doomed")
		})
	}
}

// expectFallback checks that a new connection by pw is handed to the fallback site.
func expectFallback(t *testing.T, addr, pw string) {
	t.Helper()
	c, err := dialTrojan(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(request(pw, "127.0.0.1:9", []byte("GET / HTTP/1.1\r\n\r\n"))); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(c)
	if !bytes.HasPrefix(b, []byte("FALLBACK")) {
		t.Errorf("new connection of a user without access got %q, want the fallback site", b)
	}
}

// TestAuthTimingWithSlowDatabase: while every database round trip takes 300 ms (a delaying proxy in
// front of MariaDB, and the server refreshing constantly through it), a known and an unknown password
// are answered equally fast, and far faster than one query: no query runs on the path.
func TestAuthTimingWithSlowDatabase(t *testing.T) {
	db := testdb.MySQL(t)
	const delay = 150 * time.Millisecond // each way
	e := newAcctEnv(t, db)
	e.dbAddrOver = startDelayProxy(t, db.MySQL.Addr, delay)
	db.AddUser(t, "known", "pw-known", -1)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	e.server("server", port, "")
	greeter := startGreeter(t)
	// Wait until the slow refresh has loaded the user.
	deadline := time.Now().Add(15 * time.Second)
	for {
		if d, err := authTime(addr, "pw-known", greeter); err == nil && d > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("known user never accepted")
		}
		time.Sleep(200 * time.Millisecond)
	}
	var known, unknown []time.Duration
	for i := range 40 {
		pw, dst := "pw-known", &known
		if i%2 == 1 {
			pw, dst = "pw-nobody-"+strconv.Itoa(i), &unknown
		}
		d, err := authTime(addr, pw, greeter)
		if err != nil {
			t.Fatal(err)
		}
		*dst = append(*dst, d)
	}
	mk, mu := median(known), median(unknown)
	t.Logf("median time to the first answer byte: known %v, unknown %v (database round trip %v)", mk, mu, 2*delay)
	if mk > delay || mu > delay {
		t.Errorf("authentication waited on the database: medians known %v unknown %v, one database round trip is %v", mk, mu, 2*delay)
	}
	if diff := (mk - mu).Abs(); diff > 20*time.Millisecond {
		t.Errorf("known and unknown passwords differ by %v (medians %v vs %v)", diff, mk, mu)
	}
}

// authTime sends a request for pw after the TLS handshake and measures until the first byte of the
// answer: the greeter's for a known user, the fallback site's for an unknown one.
func authTime(addr, pw, greeter string) (time.Duration, error) {
	c, err := dialTrojan(addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	if _, err := c.Write(request(pw, greeter, []byte("x"))); err != nil {
		return 0, err
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil {
		return 0, err
	}
	d := time.Since(start)
	if (b[0] == 'F') != (pw != "pw-known") {
		return -1, nil // not (yet) the expected side
	}
	return d, nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// startGreeter is a target that says "hello" as soon as something arrives.
func startGreeter(t testing.TB) string { return startReplier(t, "hello") }

// startDelayProxy forwards TCP to target, holding every chunk for delay in each direction.
func startDelayProxy(t testing.TB, target string, delay time.Duration) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	pump := func(dst, src net.Conn) {
		defer wg.Done()
		type chunk struct {
			b  []byte
			at time.Time
		}
		ch := make(chan chunk, 1024)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer dst.Close()
			for c := range ch {
				time.Sleep(time.Until(c.at))
				if _, err := dst.Write(c.b); err != nil {
					return
				}
			}
		}()
		defer close(ch)
		for {
			b := make([]byte, 32<<10)
			n, err := src.Read(b)
			if n > 0 {
				ch <- chunk{b[:n], time.Now().Add(delay)}
			}
			if err != nil {
				return
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			wg.Add(2)
			go pump(u, c)
			go pump(c, u)
		}
	}()
	return ln.Addr().String()
}

// TestAccountingSIGKILLWithJournal: counts that never reached the database (flush interval of an hour)
// survive a SIGKILL in the journal and are written, exactly, by the next start.
func TestAccountingSIGKILLWithJournal(t *testing.T) {
	db := testdb.SQLite(t)
	e := newAcctEnv(t, db)
	e.flush = "1h"
	db.AddUser(t, "ann", "pw-ann", -1)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	journal := e.dir + "/journal.json"
	p := e.server("server", port, journal)
	var want usage
	for i := range 20 {
		up, dn := int64(16+1000*i), int64(5000*i)
		if err := transfer(addr, "pw-ann", e.sink, up, dn); err != nil {
			t.Fatal(err)
		}
		want.up += up
		want.down += dn
	}
	time.Sleep(4 * users.Tick) // the journal is written every Tick
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
	if down, up := db.Usage(t, "pw-ann"); down != 0 || up != 0 {
		t.Fatalf("counts reached the database before the kill (%d/%d): the test proves nothing", down, up)
	}
	p2 := e.server("server-again", port, journal)
	if err := p2.stop(20 * time.Second); err != nil {
		t.Fatalf("restarted server: %v\n%s", err, p2.Output())
	}
	if down, up := db.Usage(t, "pw-ann"); down != want.down || up != want.up {
		t.Errorf("after SIGKILL and restart: %d/%d, want %d/%d", down, up, want.down, want.up)
	}
}
