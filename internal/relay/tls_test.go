package relay

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"testing"
	"time"
)

// tlsPair returns a client and a server *tls.Conn over loopback TCP, handshake done, and the
// client's TCP connection.
func tlsPair(t *testing.T) (client *tls.Conn, clientRaw *net.TCPConn, server *tls.Conn) {
	t.Helper()
	return tlsPairUnder(t, func(c *net.TCPConn) net.Conn { return c })
}

// tlsPairUnder is tlsPair with the server's TLS over under(its TCP connection).
func tlsPairUnder(t *testing.T, under func(*net.TCPConn) net.Conn) (client *tls.Conn, clientRaw *net.TCPConn, server *tls.Conn) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cr, sr := tcpPair(t)
	client = tls.Client(cr, &tls.Config{InsecureSkipVerify: true})
	server = tls.Server(under(sr), &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	errc := make(chan error, 1)
	go func() { errc <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return client, cr, server
}

// TestPipeTLSHalfClose: when the plain side ends, the TLS peer gets close_notify and then a FIN,
// and can still send; when the TLS peer sends close_notify, the plain side sees EOF.
func TestPipeTLSHalfClose(t *testing.T) {
	client, clientRaw, server := tlsPair(t)
	b, peerB := tcpPair(t)
	done := make(chan result, 1)
	go func() {
		x, y, err := Pipe(server, b, time.Minute)
		done <- result{x, y, err}
	}()
	peerB.Write([]byte("from plain side"))
	peerB.CloseWrite()
	client.SetDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "from plain side" {
		t.Fatalf("TLS peer read %q, %v; want the data then close_notify", got, err)
	}
	if _, err := clientRaw.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("TCP under TLS after close_notify: %v, want EOF (FIN)", err)
	}
	if _, err := client.Write([]byte("reply")); err != nil {
		t.Fatal(err)
	}
	client.CloseWrite() // close_notify only
	peerB.SetDeadline(time.Now().Add(5 * time.Second))
	got, err = io.ReadAll(peerB)
	if err != nil || string(got) != "reply" {
		t.Fatalf("plain peer read %q, %v", got, err)
	}
	select {
	case r := <-done:
		if r.err != nil || r.aToB != 5 || r.bToA != 15 {
			t.Fatalf("Pipe = %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Pipe did not end")
	}
}
