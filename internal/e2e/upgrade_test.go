//go:build unix

package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestUpgradeUnderLoad: the binary is replaced on disk and the server gets SIGUSR2 while 200 new
// connections per second arrive and long tunnels are mid-transfer. The new process takes over the
// listening socket (internal/handoff); no new connection fails, the old process's tunnels complete
// byte for byte, and the old process exits once they have.
func TestUpgradeUnderLoad(t *testing.T) {
	const (
		rate        = 200 // new connections per second
		loadFor     = 4 * time.Second
		upgradeAt   = time.Second // into the load
		tunnels     = 8
		tunnelFor   = 3 * time.Second
		tunnelChunk = 32 << 10
	)
	dir := t.TempDir()
	exe := filepath.Join(dir, "fastrojan")
	copyFile(t, binary, exe)
	cert, key := certFiles(t, dir)
	echo := startEchoOrigin(t, "tcp", "127.0.0.1:0")
	fb := startFallbackSite(t)
	fh, fp, _ := net.SplitHostPort(fb)
	fport, _ := strconv.Atoi(fp)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t)) // handed over too
	cfg := writeJSON(t, dir, "server.json", map[string]any{
		"run_type": "server", "local_addr": "127.0.0.1", "local_port": port,
		"remote_addr": fh, "remote_port": fport, "password": []string{"pw"}, "log_level": 1,
		"ssl":       map[string]any{"cert": cert, "key": key},
		"fastrojan": map[string]any{"shutdown_timeout": "20s", "metrics_listen": metricsAddr},
	})
	// The log goes to a file, not a pipe: the new process inherits it and outlives the old one.
	logPath := filepath.Join(dir, "log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	old := exec.Command(exe, "-c", cfg)
	old.Stdout, old.Stderr = logf, logf
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	oldDone := make(chan error, 1)
	go func() { oldDone <- old.Wait() }()
	var newPid atomic.Int64
	t.Cleanup(func() {
		_ = old.Process.Kill()
		if newPid.Load() == 0 { // the test stopped early: a new process may still have started
			if b, err := os.ReadFile(logPath); err == nil {
				if m := regexp.MustCompile(`new_pid=(\d+)`).FindSubmatch(b); m != nil {
					pid, _ := strconv.Atoi(string(m[1]))
					newPid.Store(int64(pid))
				}
			}
		}
		if pid := int(newPid.Load()); pid > 0 {
			stopPid(t, pid)
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("server log:\n%s", b)
		}
	})
	waitDial(t, addr)

	// Long tunnels through the old process: a seeded stream up, echoed back, checked whole.
	var twg sync.WaitGroup
	tunnelErr := make(chan error, tunnels)
	for i := range tunnels {
		twg.Go(func() {
			if err := longTunnel(addr, echo, uint64(i), tunnelFor, tunnelChunk); err != nil {
				tunnelErr <- fmt.Errorf("tunnel %d: %w", i, err)
			}
		})
	}

	// New connections at a steady rate, each a full round trip through a fresh tunnel.
	var failures, total atomic.Int64
	var firstFail atomic.Value
	var lwg sync.WaitGroup
	start := time.Now()
	upgraded := false
	for i := range int(rate * loadFor / time.Second) {
		time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / rate))) // on schedule, not after the last
		if !upgraded && time.Since(start) >= upgradeAt {
			upgraded = true
			// Replace the binary the way a package manager does (a new file renamed over the old),
			// then ask the running server to hand over.
			copyFile(t, binary, exe+".new")
			if err := os.Rename(exe+".new", exe); err != nil {
				t.Fatal(err)
			}
			if err := old.Process.Signal(syscall.SIGUSR2); err != nil {
				t.Fatal(err)
			}
		}
		lwg.Go(func() {
			total.Add(1)
			if err := shortTunnel(addr, echo, i); err != nil {
				failures.Add(1)
				firstFail.CompareAndSwap(nil, err)
			}
		})
	}
	lwg.Wait()
	twg.Wait()
	close(tunnelErr)
	for err := range tunnelErr {
		t.Error(err)
	}
	if f := failures.Load(); f > 0 {
		t.Errorf("%d of %d new connections failed during the upgrade; first: %v", f, total.Load(), firstFail.Load())
	}
	t.Logf("%d new connections in %v (%d/s) through the upgrade, %d failed; %d long tunnels intact", total.Load(),
		time.Since(start).Round(time.Millisecond), rate, failures.Load(), tunnels)

	// The old process hands over, drains and exits on its own; the new one serves on.
	select {
	case err := <-oldDone:
		if err != nil {
			t.Errorf("old process: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the old process did not exit after its tunnels ended")
	}
	log, _ := os.ReadFile(logPath)
	m := regexp.MustCompile(`new_pid=(\d+)`).FindSubmatch(log)
	if m == nil {
		t.Fatalf("no hand-off in the log")
	}
	pid, _ := strconv.Atoi(string(m[1]))
	newPid.Store(int64(pid))
	if !bytes.Contains(log, []byte("serving on the listener handed over by the previous process")) {
		t.Error("the new process did not say it took over the listener")
	}
	for i := range 20 {
		if err := shortTunnel(addr, echo, i); err != nil {
			t.Fatalf("after the old process exited: %v", err)
		}
	}
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("metrics endpoint after the upgrade: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("metrics endpoint after the upgrade: %s", resp.Status)
	}
}

func copyFile(t *testing.T, from, to string) {
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

func waitDial(t *testing.T, addr string) {
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s", addr)
		}
	}
}

// stopPid ends a process that is not this one's child: SIGTERM, then waits for it to be gone.
func stopPid(t *testing.T, pid int) {
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if syscall.Kill(pid, 0) != nil {
			return
		}
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	t.Errorf("process %d did not exit within 15 s of SIGTERM", pid)
}

// shortTunnel opens a tunnel to the echo origin, sends a short message and expects it back.
func shortTunnel(addr, echo string, i int) error {
	c, err := dialTrojan(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	msg := []byte(fmt.Sprintf("hello %d", i))
	if _, err := c.Write(request("pw", echo, msg)); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("got %q, want %q", got, msg)
	}
	return nil
}

// longTunnel streams seeded random chunks up for d and checks the echo is the same bytes.
func longTunnel(addr, echo string, seed uint64, d time.Duration, chunk int) error {
	c, err := dialTrojan(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(d + 30*time.Second))
	if _, err := c.Write(request("pw", echo, nil)); err != nil {
		return err
	}
	sent := sha256.New()
	var n int64
	werr := make(chan error, 1)
	go func() {
		r := rand.New(rand.NewPCG(seed, 1))
		b := make([]byte, chunk)
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			if _, err := c.Write(b); err != nil {
				werr <- err
				return
			}
			sent.Write(b)
			n += int64(len(b))
		}
		werr <- c.CloseWrite()
	}()
	got := sha256.New()
	m, err := io.Copy(got, c)
	if err != nil {
		return fmt.Errorf("read after %d bytes: %w", m, err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if m != n || !bytes.Equal(got.Sum(nil), sent.Sum(nil)) {
		return fmt.Errorf("echoed %d bytes, sent %d (same bytes: %v)", m, n, bytes.Equal(got.Sum(nil), sent.Sum(nil)))
	}
	return nil
}
