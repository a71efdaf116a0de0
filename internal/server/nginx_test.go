package server

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/probes"
)

// testNginx is an nginx started by a test: an HTTPS port (tls) and a plain HTTP port (plain) that
// serves the same site, as a typical Trojan front has; the plain port is the fallback.
type testNginx struct {
	tls, plain string
}

// headerTimeout is nginx's client_header_timeout in these tests, and the server's HandshakeTimeout:
// the two settings mean the same (how long a connection may take to say something understood).
const headerTimeout = 3 * time.Second

func findNginx(t *testing.T) string {
	for _, p := range []string{"nginx", "/usr/sbin/nginx"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Skip("needs nginx on PATH or in /usr/sbin (apt-get install nginx-light; .ci/run installs it)")
	return ""
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startNginx runs nginx in the foreground with a generated config and the servers' test certificate.
func startNginx(t *testing.T) *testNginx {
	bin := findNginx(t)
	dir := t.TempDir()
	cert := selfSigned(t)
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certFile := write("cert.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}))
	keyFile := write("key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}))
	ng := &testNginx{tls: freePort(t), plain: freePort(t)}
	if err := os.MkdirAll(filepath.Join(dir, "html"), 0o755); err != nil {
		t.Fatal(err)
	}
	write("html/index.html", []byte("<html><body>It works.</body></html>\n"))
	conf := fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 1024; }
http {
  access_log off;
  client_header_timeout %[2]ds;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server {
    listen %[3]s ssl;
    listen %[4]s;
    ssl_certificate %[5]s;
    ssl_certificate_key %[6]s;
    root %[1]s/html;
  }
}
`, dir, int(headerTimeout/time.Second), ng.tls, ng.plain, certFile, keyFile)
	confFile := write("nginx.conf", []byte(conf))
	cmd := exec.Command(bin, "-p", dir, "-c", confFile)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	for _, addr := range []string{ng.tls, ng.plain} {
		deadline := time.Now().Add(5 * time.Second)
		for {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
				t.Fatalf("nginx does not listen on %s: %v\n%s", addr, err, log)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return ng
}

// TestNonTLSProbesMatchNginx replays the probe set against nginx's HTTPS port, against fastrojan with
// its built-in answers and against fastrojan with tls_site pointing at that nginx, and compares the
// bytes, the end of the connection and the time to close.
func TestNonTLSProbesMatchNginx(t *testing.T) {
	ng := startNginx(t)
	builtin := startServer(t, func(o *Options) {
		o.Fallback = ng.plain
		o.HandshakeTimeout = headerTimeout
		o.ServerToken = "" // learned from the fallback, nginx's plain port
	})
	relayed := startServer(t, func(o *Options) {
		o.Fallback = ng.plain
		o.TLSSite = ng.tls
		o.HandshakeTimeout = headerTimeout
	})
	// The built-in answers name the server as the fallback site does; wait until it has been asked.
	for deadline := time.Now().Add(5 * time.Second); builtin.serverToken() == "nginx"; {
		if time.Now().After(deadline) {
			t.Fatal("the server never learned the fallback site's Server header")
		}
		time.Sleep(10 * time.Millisecond)
	}
	list := probes.List()
	if len(list) != 34 {
		t.Fatalf("%d probes, want 34", len(list))
	}
	extra := probes.Extra() // run at the same time, scored apart
	all := append(append([]probes.Probe(nil), list...), extra...)
	window := headerTimeout + 1500*time.Millisecond
	var ref, got, viaSite []probes.Result
	done := make(chan struct{}, 3)
	for _, r := range []struct {
		addr string
		res  *[]probes.Result
	}{{ng.tls, &ref}, {builtin.addr, &got}, {relayed.addr, &viaSite}} {
		go func() {
			*r.res = probes.Run(context.Background(), r.addr, all, window)
			done <- struct{}{}
		}()
	}
	for range 3 {
		<-done
	}
	for _, r := range ref {
		if r.End == probes.EndErr {
			t.Fatalf("probe %s against nginx failed: %v", r.Probe, r.Err)
		}
	}
	score := func(mode string, res []probes.Result, from, to int) int {
		same := 0
		for i := from; i < to; i++ {
			if ok, why := probes.Same(res[i], ref[i]); ok {
				same++
			} else {
				t.Logf("%s: probe %s: %s", mode, all[i].Name, why)
			}
		}
		t.Logf("%s: %d of %d probes answered as nginx does (%.0f%%)", mode, same, to-from, 100*float64(same)/float64(to-from))
		return same
	}
	n := len(list)
	if same := score("built-in", got, 0, n); same*10 < n*9 {
		t.Errorf("built-in answers: %d of %d probes match nginx, want at least 90%%", same, n)
	}
	if same := score("tls_site", viaSite, 0, n); same != n {
		t.Errorf("tls_site: %d of %d probes match nginx, want all", same, n)
	}
	if same := score("built-in, extra probes", got, n, len(all)); same*10 < len(extra)*9 {
		t.Errorf("built-in answers: %d of %d extra probes match nginx, want at least 90%%", same, len(extra))
	}
	if same := score("tls_site, extra probes", viaSite, n, len(all)); same != len(extra) {
		t.Errorf("tls_site: %d of %d extra probes match nginx, want all", same, len(extra))
	}
	if st := builtin.Stats(); st.Decoys == 0 || st.Fallbacks != 0 {
		t.Errorf("built-in server stats %+v: want decoy answers and no fallback", st)
	}
	if st := relayed.Stats(); st.TLSSite == 0 || st.Decoys != 0 {
		t.Errorf("tls_site server stats %+v: want relays to tls_site and no decoy answer", st)
	}
}
