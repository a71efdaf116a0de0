//go:build unix

package e2e

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCertificateReloadOnSIGUSR1: after the files are replaced and SIGUSR1 sent, new handshakes get
// the new certificate, and the server keeps serving.
func TestCertificateReloadOnSIGUSR1(t *testing.T) {
	p := startPair(t)
	before := tlsDial(t, p.serverAddr).ConnectionState().PeerCertificates[0]

	dir := t.TempDir()
	newCert, newKey := certFiles(t, dir)
	for src, dst := range map[string]string{newCert: p.cert, newKey: strings.TrimSuffix(p.cert, "cert.pem") + "key.pem"} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.server.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		after := tlsDial(t, p.serverAddr).ConnectionState().PeerCertificates[0]
		if !after.Equal(before) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still the old certificate 5 s after SIGUSR1\n%s", p.server.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Clients that trust the new certificate work; this client trusts the old file it loaded at start,
	// so only check that the server still answers probers.
	status, _, err := httpGetVia(tlsDial(t, p.serverAddr), "localhost", "/")
	if err != nil || status != "HTTP/1.1 200 OK" {
		t.Fatalf("after reload: %q %v", status, err)
	}
}
