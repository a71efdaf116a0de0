package e2e

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// These tests put trojan-gfw (Debian's trojan 1.16) on the other end. They prove wire compatibility:
// if either side's header, hash or framing drifted, the peer would hand the connection to its fallback
// and the origin's page and the echo would not come back.

func TestInteropOurClientTrojanGFWServer(t *testing.T) {
	trojanBin := trojanGFW(t)
	dir := t.TempDir()
	cert, key := certFiles(t, dir)
	fallback := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "trojan-gfw fallback")
	}))
	defer fallback.Close()
	sport, cport := freePort(t), freePort(t)
	gfwCfg := writeJSON(t, dir, "gfw-server.json", serverConfig(sport, fallback.Listener.Addr().String(), "interop-pw", cert, key))
	gfw := start(t, trojanBin, "-c", gfwCfg)
	waitListening(t, gfw, fmt.Sprintf("127.0.0.1:%d", sport))

	ours := start(t, binary, "-c", writeJSON(t, dir, "client.json", clientConfig(cport, sport, "interop-pw", cert)))
	socks := fmt.Sprintf("127.0.0.1:%d", cport)
	waitListening(t, ours, socks)

	checkThroughProxy(t, socks)
}

func TestInteropTrojanGFWClientOurServer(t *testing.T) {
	trojanBin := trojanGFW(t)
	dir := t.TempDir()
	cert, key := certFiles(t, dir)
	fallback := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "fastrojan fallback")
	}))
	defer fallback.Close()
	sport, cport := freePort(t), freePort(t)
	ours := start(t, binary, "-c", writeJSON(t, dir, "server.json", serverConfig(sport, fallback.Listener.Addr().String(), "interop-pw", cert, key)))
	waitListening(t, ours, fmt.Sprintf("127.0.0.1:%d", sport))

	gfwCfg := clientConfig(cport, sport, "interop-pw", cert)
	gfwCfg["ssl"].(map[string]any)["verify"] = true
	gfwCfg["ssl"].(map[string]any)["verify_hostname"] = true
	gfw := start(t, trojanBin, "-c", writeJSON(t, dir, "gfw-client.json", gfwCfg))
	socks := fmt.Sprintf("127.0.0.1:%d", cport)
	waitListening(t, gfw, socks)

	checkThroughProxy(t, socks)
}

// checkThroughProxy fetches a page from an HTTP origin and echoes 4 MiB through the SOCKS5 proxy.
func checkThroughProxy(t *testing.T, socks string) {
	t.Helper()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "origin page %s", r.URL.Path)
	}))
	defer origin.Close()
	conn := socksDial(t, socks, origin.Listener.Addr().String())
	status, body, err := httpGetVia(conn, "origin", "/interop")
	if err != nil {
		t.Fatalf("GET through the proxy: %v", err)
	}
	if status != "HTTP/1.1 200 OK" || string(body) != "origin page /interop" {
		t.Fatalf("got %q %q, want the origin's page", status, body)
	}

	echo := startEchoOrigin(t, "tcp", "127.0.0.1:0")
	conn = socksDial(t, socks, echo)
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	data := make([]byte, 4<<20)
	rand.NewChaCha8([32]byte{7}).Read(data)
	errc := make(chan error, 1)
	go func() { _, err := conn.Write(data); errc <- err }()
	got := make([]byte, len(data))
	if _, err := io.ReadFull(conn, got); err != nil {
		t.Fatalf("echo through the proxy: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("echo through the proxy differs from what was sent")
	}
	_ = net.Conn(conn).Close()
}
