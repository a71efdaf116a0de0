package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDemo runs the README's first command and checks what it promises: fetches through the proxy
// with their time to first byte and TFO outcome, the prober's view, exit 0.
func TestDemo(t *testing.T) {
	out, err := exec.Command(binary, "demo", "-n", "3").CombinedOutput()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	fetch := regexp.MustCompile(`(?m)^fetch [1-3]/3: 200 OK, \d+ bytes, time to first byte [0-9.]+[µm]?s, tfo: \w+`)
	if n := len(fetch.FindAll(out, -1)); n != 3 {
		t.Fatalf("demo printed %d fetch lines, want 3:\n%s", n, out)
	}
	if !strings.Contains(string(out), "prober without password (HTTPS GET to the server): 200 OK") {
		t.Fatalf("demo did not show the prober getting the fallback page:\n%s", out)
	}
}

// TestConfigCheck: -t accepts trojan-gfw's own example and rejects a bad key naming file, path and fix.
func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	cert, key := certFiles(t, dir)
	good := writeJSON(t, dir, "good.json", serverConfig(443, "127.0.0.1:80", "pw", cert, key))
	out, err := exec.Command(binary, "-t", "-c", good).CombinedOutput()
	if err != nil {
		t.Fatalf("-t on a valid config: %v\n%s", err, out)
	}
	bad := serverConfig(443, "127.0.0.1:80", "pw", cert, key)
	bad["tcp"] = map[string]any{"fast_open": "yes"}
	badPath := writeJSON(t, dir, "bad.json", bad)
	out, err = exec.Command(binary, "-t", "-c", badPath).CombinedOutput()
	if err == nil {
		t.Fatalf("-t accepted tcp.fast_open = \"yes\":\n%s", out)
	}
	for _, want := range []string{"bad.json", "tcp.fast_open", "boolean"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("error %q does not mention %q", out, want)
		}
	}
	unknown := serverConfig(443, "127.0.0.1:80", "pw", cert, key)
	unknown["ssl"].(map[string]any)["verfiy"] = true
	out, err = exec.Command(binary, "-t", "-c", writeJSON(t, dir, "typo.json", unknown)).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "verfiy") {
		t.Fatalf("a misspelt key was not reported by name: %v\n%s", err, out)
	}
}

// TestServerWithoutConfigAndClientFromLink: `fastrojan server` creates its state once, prints a link
// and the client command; `fastrojan client LINK` then proxies; a restart reuses the same password.
func TestServerWithoutConfigAndClientFromLink(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	sport := freePort(t)
	listen := fmt.Sprintf("127.0.0.1:%d", sport)
	srv := start(t, binary, "server", "--listen", listen, "--state-dir", state, "--host", "localhost", "--self-signed")
	waitListening(t, srv, listen)
	waitOutput(t, srv, regexp.MustCompile(`fastrojan client '`)) // printed once the server listens with its certificate
	link := regexp.MustCompile(`trojan://\S+`).FindString(srv.Output())
	if link == "" || !strings.Contains(srv.Output(), "fastrojan client '") {
		t.Fatalf("server did not print a link and client command:\n%s", srv.Output())
	}
	for _, f := range []string{"cert.pem", "key.pem", "password"} {
		fi, err := os.Stat(filepath.Join(state, f))
		if err != nil {
			t.Fatalf("state file %s: %v", f, err)
		}
		if f != "cert.pem" && fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is readable by others: %v", f, fi.Mode())
		}
	}
	pwBytes, _ := os.ReadFile(filepath.Join(state, "password"))
	pw := strings.TrimSpace(string(pwBytes))
	if len(pw) < 16 {
		t.Fatalf("generated password %d characters long, want at least 16", len(pw))
	}
	if strings.Contains(logLines(srv.Output()), pw) {
		t.Error("the password appears in a log line")
	}

	cport := freePort(t)
	socks := fmt.Sprintf("127.0.0.1:%d", cport)
	cl := start(t, binary, "client", link, "--listen", socks)
	waitListening(t, cl, socks)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "via link")
	}))
	defer origin.Close()
	tunnel := socksDial(t, socks, origin.Listener.Addr().String())
	status, body, err := httpGetVia(tunnel, "o", "/")
	if err != nil || status != "HTTP/1.1 200 OK" || string(body) != "via link" {
		t.Fatalf("through the link's client: %q %q %v", status, body, err)
	}
	tunnel.Close() // a half-closed tunnel would rightly hold the server's drain below
	// A prober gets the built-in site.
	status, body, err = httpGetVia(tlsDial(t, listen), "localhost", "/")
	if err != nil || status != "HTTP/1.1 200 OK" || !strings.Contains(string(body), "It works") {
		t.Fatalf("prober: %q %q %v", status, body, err)
	}

	// Restart: the same password (the same link) keeps working.
	if err := srv.stop(15 * time.Second); err != nil {
		t.Fatalf("server exit: %v", err)
	}
	srv2 := start(t, binary, "server", "--listen", listen, "--state-dir", state, "--host", "localhost", "--self-signed")
	waitListening(t, srv2, listen)
	waitOutput(t, srv2, regexp.MustCompile(`fastrojan client '`)) // the link comes after the listener, as above
	if got := regexp.MustCompile(`trojan://\S+`).FindString(srv2.Output()); got != link {
		t.Fatalf("link changed across restart: %q then %q", link, got)
	}
	status, _, err = httpGetVia(socksDial(t, socks, origin.Listener.Addr().String()), "o", "/")
	if err != nil || status != "HTTP/1.1 200 OK" {
		t.Fatalf("after server restart: %q %v", status, err)
	}
}

// logLines keeps the structured log lines (slog text format) of a process's output.
func logLines(out string) string {
	var b strings.Builder
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "time=") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
