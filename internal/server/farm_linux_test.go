package server

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/metrics"
	"github.com/fastrojan/fastrojan/internal/tfo/farm"
)

// listenerKeys reads a listener's TFO keys back (getsockopt TCP_FASTOPEN_KEY, Linux ≥ 5.3).
func listenerKeys(t *testing.T, ln *net.TCPListener) []byte {
	t.Helper()
	rc, err := ln.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n := uint32(len(buf))
	var serr syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, serr = unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.IPPROTO_TCP, unix.TCP_FASTOPEN_KEY,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
	}); err != nil || serr != 0 {
		t.Fatalf("getsockopt TCP_FASTOPEN_KEY: %v %v", err, serr)
	}
	return buf[:n]
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestFarmServerListenerKeysAndHangup: the server's listener gets the farm's keys at start, SIGHUP
// loads a new secret into it (and starts the rotation when the first secret appears), a secret file
// with loose permissions is refused and the keys stay, the epoch is a metric, and no log line shows
// the secret or a key.
func TestFarmServerListenerKeysAndHangup(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for _, p := range []string{cert, key} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	secretPath := filepath.Join(dir, "farm.key")
	cfgPath := filepath.Join(dir, "config.json")
	writeConfig := func(withSecret bool) *config.Config {
		t.Helper()
		c := config.Default(config.RunServer)
		c.LocalAddr, c.LocalPort = "127.0.0.1", 443
		c.RemoteAddr, c.RemotePort = "127.0.0.1", 80
		c.Password = []string{"pw"}
		c.SSL.Cert, c.SSL.Key = cert, key
		if withSecret {
			c.Fastrojan.Farm.SecretFile = secretPath
		}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
			t.Fatal(err)
		}
		loaded, err := config.Load(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		return loaded
	}
	setSecret := func(s string, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(secretPath, []byte(s+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(secretPath, mode); err != nil {
			t.Fatal(err)
		}
	}
	farmOf := func(s string) *farm.Farm {
		f, err := farm.New([]byte(s), farm.DefaultInterval, farm.DefaultSkew)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	const secret1, secret2 = "first-farm-secret-0123456789abcdef", "second-farm-secret-0123456789abcdef"

	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ln := l.(*net.TCPListener)

	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: config.LevelFromTrojan(0)}))
	m := metrics.New()

	// Start without a secret: the kernel's key stays, the gauge says -1.
	cfg := writeConfig(false)
	kernelKey := listenerKeys(t, ln)
	keys, err := startFarmKeys(cfg, ln, log, m)
	if err != nil {
		t.Fatal(err)
	}
	defer keys.Close()
	if got := listenerKeys(t, ln); !bytes.Equal(got, kernelKey) {
		t.Errorf("without a secret the listener's key changed")
	}
	if got := gauge(t, m, "fastrojan_tfo_farm_epoch"); got != -1 {
		t.Errorf("epoch gauge without a secret = %v, want -1", got)
	}

	waitKeys := func(what string, f *farm.Farm) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			got := listenerKeys(t, ln)
			now := time.Now()
			if bytes.Equal(got, f.KeysAt(now).Bytes()) {
				if e := gauge(t, m, "fastrojan_tfo_farm_epoch"); e != float64(f.Epoch(now)) {
					t.Errorf("%s: epoch gauge %v, want %d", what, e, f.Epoch(now))
				}
				return
			}
			if now.After(deadline) {
				t.Fatalf("%s: the listener holds %x, want the farm's keys", what, got)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	hangup := func() {
		t.Helper()
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}

	// SIGHUP after a secret was added to the config: the farm's keys, rotating from now on.
	setSecret(secret1, 0o600)
	writeConfig(true)
	hangup()
	waitKeys("first secret after SIGHUP", farmOf(secret1))

	// SIGHUP with a new secret: the new keys, no restart.
	setSecret(secret2, 0o600)
	hangup()
	waitKeys("second secret after SIGHUP", farmOf(secret2))

	// SIGHUP with a secret file others can read: refused, the keys stay.
	setSecret(secret1, 0o644)
	hangup()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "chmod 600") {
		if time.Now().After(deadline) {
			t.Fatalf("no refusal of the group/world-readable secret in the log:\n%s", logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := listenerKeys(t, ln); !bytes.Equal(got, farmOf(secret2).KeysAt(time.Now()).Bytes()) {
		t.Error("a refused secret file changed the listener's keys")
	}

	if err := keys.Close(); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, "TFO farm keys set") {
		t.Errorf("the log does not report the key changes:\n%s", out)
	}
	for _, s := range []string{secret1, secret2} {
		ks := farmOf(s).KeysAt(time.Now())
		for _, leak := range []string{s, ks.SysctlValue()[:17], string(ks.Primary[:])} {
			if strings.Contains(out, leak) {
				t.Errorf("the log shows secret material %q:\n%s", leak, out)
			}
		}
	}
}

// gauge reads one gauge's value from m.
func gauge(t *testing.T, m *metrics.Metrics, name string) float64 {
	t.Helper()
	mfs, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}
