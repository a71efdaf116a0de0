package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"testing"
)

// trojanGo returns the path of a trojan-go binary, or skips: trojan-go is not packaged by Debian,
// so CI proves mux interop with trojan-go's protocol side built from smux (internal/server and
// internal/client mux tests); this runs the real one where it is installed.
func trojanGo(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("trojan-go")
	if err != nil {
		t.Skip("trojan-go not on PATH (not a Debian package; put a release binary on PATH to run this interop test)")
	}
	return p
}

// trojan-go's client with mux on, through our server; and our client with mux on, through trojan-go's
// server.
func TestInteropTrojanGoMux(t *testing.T) {
	bin := trojanGo(t)
	dir := t.TempDir()
	cert, key := certFiles(t, dir)
	fallback := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "fallback") }))
	defer fallback.Close()
	mux := map[string]any{"enabled": true, "concurrency": 8, "idle_timeout": 60}

	t.Run("trojan-go client, our server", func(t *testing.T) {
		sport, cport := freePort(t), freePort(t)
		ours := start(t, binary, "-c", writeJSON(t, dir, "server.json", serverConfig(sport, fallback.Listener.Addr().String(), "tg-pw", cert, key)))
		waitListening(t, ours, fmt.Sprintf("127.0.0.1:%d", sport))
		cfg := clientConfig(cport, sport, "tg-pw", cert)
		cfg["mux"] = mux
		tg := start(t, bin, "-config", writeJSON(t, dir, "tg-client.json", cfg))
		socks := fmt.Sprintf("127.0.0.1:%d", cport)
		waitListening(t, tg, socks)
		checkThroughProxy(t, socks)
	})
	t.Run("our client, trojan-go server", func(t *testing.T) {
		sport, cport := freePort(t), freePort(t)
		scfg := serverConfig(sport, fallback.Listener.Addr().String(), "tg-pw", cert, key)
		tg := start(t, bin, "-config", writeJSON(t, dir, "tg-server.json", scfg))
		waitListening(t, tg, fmt.Sprintf("127.0.0.1:%d", sport))
		cfg := clientConfig(cport, sport, "tg-pw", cert)
		cfg["mux"] = mux
		ours := start(t, binary, "-c", writeJSON(t, dir, "client.json", cfg))
		socks := fmt.Sprintf("127.0.0.1:%d", cport)
		waitListening(t, ours, socks)
		checkThroughProxy(t, socks)
	})
}
