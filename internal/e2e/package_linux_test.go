package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDebianPackage builds the .deb with scripts/package (around the binary under test), installs it
// with dpkg -i on this machine, and checks what it promises: the files, the TFO sysctl applied,
// systemd-analyze verify passing on the units, nothing enabled, the packaged binary accepting the
// packaged example config with -t; then purges it and puts the sysctl back.
func TestDebianPackage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: installs the .deb with dpkg -i (CI runs as root)")
	}
	for _, tool := range []string{"dpkg", "dpkg-deb", "systemd-analyze"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (apt-get install dpkg systemd; .ci/run does)", tool)
		}
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f", "${Status}", "fastrojan").Output(); err == nil && strings.Contains(string(out), "installed") {
		t.Skip("a fastrojan package is installed on this machine already; not touching it")
	}
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	pkg := exec.Command(filepath.Join(root, "scripts", "package"), t.TempDir())
	pkg.Env = append(os.Environ(), "FASTROJAN_BINARY="+binary, "VERSION=0.0.0+test")
	out, err := pkg.Output()
	if err != nil {
		t.Fatalf("scripts/package: %v", err)
	}
	deb := strings.TrimSpace(string(out))
	if !strings.HasSuffix(deb, ".deb") {
		t.Fatalf("scripts/package printed %q, want the .deb's path", deb)
	}
	info := run("dpkg-deb", "--info", deb)
	for _, want := range []string{"Package: fastrojan", "Version: 0.0.0+test", "postinst", "conffiles"} {
		if !strings.Contains(info, want) {
			t.Errorf("dpkg-deb --info lacks %q:\n%s", want, info)
		}
	}

	const sysctl = "/proc/sys/net/ipv4/tcp_fastopen"
	orig, err := os.ReadFile(sysctl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("dpkg", "--purge", "fastrojan").CombinedOutput(); err != nil {
			t.Errorf("dpkg --purge fastrojan: %v\n%s", err, out)
		}
		_ = os.WriteFile(sysctl, orig, 0o644)
	})
	run("dpkg", "-i", deb)

	for _, f := range []string{"/usr/bin/fastrojan", "/usr/lib/systemd/system/fastrojan.service",
		"/usr/lib/systemd/system/fastrojan-server.service", "/usr/lib/systemd/system/fastrojan.socket",
		"/usr/lib/sysctl.d/60-fastrojan.conf", "/etc/default/fastrojan-server",
		"/usr/share/doc/fastrojan/examples/config.json"} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("installed file: %v", err)
		}
	}
	if b, _ := os.ReadFile(sysctl); atoi(t, strings.TrimSpace(string(b)))&3 != 3 {
		t.Errorf("after installation net.ipv4.tcp_fastopen = %s, want the client and server bits (3)", b)
	}
	// Nothing is enabled or started, and nothing can start without a config.
	for _, f := range []string{"/etc/systemd/system/multi-user.target.wants/fastrojan.service",
		"/etc/systemd/system/multi-user.target.wants/fastrojan-server.service",
		"/etc/systemd/system/sockets.target.wants/fastrojan.socket", "/etc/fastrojan/config.json"} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s exists after installation", f)
		}
	}

	units := []string{"/usr/lib/systemd/system/fastrojan.service", "/usr/lib/systemd/system/fastrojan-server.service",
		"/usr/lib/systemd/system/fastrojan.socket"}
	run("systemd-analyze", append([]string{"verify", "--man=no"}, units...)...)
	// The check can fail: a unit whose command does not exist does not pass.
	bad := filepath.Join(t.TempDir(), "fastrojan-broken.service")
	unit, _ := os.ReadFile(units[0])
	_ = os.WriteFile(bad, []byte(strings.ReplaceAll(string(unit), "/usr/bin/fastrojan", "/usr/bin/fastrojan-missing")), 0o644)
	if out, err := exec.Command("systemd-analyze", "verify", "--man=no", bad).CombinedOutput(); err == nil {
		t.Errorf("systemd-analyze verify passed a unit with a missing command:\n%s", out)
	}

	// The README's drop-in for trojan-gfw users (fastrojan.service on /etc/trojan/config.json) verifies
	// too, and is really applied: the same drop-in with a missing command fails.
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, _ := strings.Cut(string(readme), "**Coming from trojan-gfw?**")
	_, block, _ := strings.Cut(after, "```ini\n")
	dropIn, _, ok := strings.Cut(block, "```")
	if !ok || !strings.Contains(dropIn, "ExecStart=/usr/bin/fastrojan -c /etc/trojan/config.json") {
		t.Fatalf("README has no drop-in for /etc/trojan/config.json: %q", dropIn)
	}
	for _, tc := range []struct {
		dropIn string
		pass   bool
	}{{dropIn, true}, {strings.ReplaceAll(dropIn, "ExecStart=/usr/bin/fastrojan", "ExecStart=/usr/bin/fastrojan-missing"), false}} {
		dir := t.TempDir()
		_ = os.MkdirAll(filepath.Join(dir, "fastrojan.service.d"), 0o755)
		_ = os.WriteFile(filepath.Join(dir, "fastrojan.service"), unit, 0o644)
		_ = os.WriteFile(filepath.Join(dir, "fastrojan.service.d", "trojan-gfw.conf"), []byte(tc.dropIn), 0o644)
		cmd := exec.Command("systemd-analyze", "verify", "--man=no", "fastrojan.service")
		cmd.Env = append(os.Environ(), "SYSTEMD_UNIT_PATH="+dir+":")
		out, err := cmd.CombinedOutput()
		if (err == nil) != tc.pass {
			t.Errorf("systemd-analyze verify with drop-in (pass=%v): %v\n%s\n%s", tc.pass, err, tc.dropIn, out)
		}
	}

	if out := run("/usr/bin/fastrojan", "-t", "-c", "/usr/share/doc/fastrojan/examples/config.json"); !strings.Contains(out, ": ok (run_type server)") {
		t.Errorf("packaged binary -t on the packaged example: %s", out)
	}
	if out := run("/usr/bin/fastrojan", "help"); !strings.Contains(out, "link") {
		t.Errorf("packaged binary lacks the link command:\n%s", out)
	}
}
