package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fastrojan/fastrojan/internal/config"
)

func TestLinkCommand(t *testing.T) {
	dir := t.TempDir()
	link := config.TrojanLink{Password: "secret-password", Host: "proxy.example.com", Port: 443, SNI: "proxy.example.com", Name: "fastrojan"}.String()
	if err := os.WriteFile(filepath.Join(dir, linkFile), []byte(link+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut strings.Builder
	if code := linkCommand(context.Background(), []string{"--state-dir", dir}, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	lines := strings.Split(out.String(), "\n")
	if lines[0] != link || !strings.Contains(out.String(), "█") {
		t.Errorf("output does not start with the link and draw a QR code:\n%s", out.String())
	}
	out.Reset()
	insecure := config.TrojanLink{Password: "pw", Host: "203.0.113.7", Port: 443, AllowInsecure: true}.String()
	if code := linkCommand(context.Background(), []string{"--no-qr", insecure}, &out, &errOut); code != exitOK ||
		strings.Contains(out.String(), "█") || !strings.Contains(out.String(), "does not verify") {
		t.Errorf("--no-qr with a link argument: exit %d\n%s", code, out.String())
	}
	if code := linkCommand(context.Background(), []string{"--state-dir", filepath.Join(dir, "none")}, &out, &errOut); code != exitFail ||
		!strings.Contains(errOut.String(), "saves its link there") {
		t.Errorf("missing state: exit %d, %q", code, errOut.String())
	}
	errOut.Reset()
	if code := linkCommand(context.Background(), []string{"http://x"}, &out, &errOut); code != exitFail || !strings.Contains(errOut.String(), "scheme") {
		t.Errorf("bad link: exit %d, %q", code, errOut.String())
	}
}

func TestLinkFromServerConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.json")
	doc := `{"run_type":"server","local_addr":"::","local_port":8443,"remote_addr":"127.0.0.1","remote_port":8080,
		"password":["first-pw","second-pw"],"fastrojan":{"acme":{"domains":["proxy.example.com"]}}}`
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut strings.Builder
	if code := linkCommand(context.Background(), []string{"-c", cfg, "--no-qr"}, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	want := "trojan://first-pw@proxy.example.com:8443?sni=proxy.example.com#fastrojan"
	if got := strings.TrimSpace(out.String()); got != want {
		t.Errorf("link %q, want %q", got, want)
	}
}
