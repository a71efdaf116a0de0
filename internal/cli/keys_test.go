package cli

import (
	"bytes"
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/tfo/farm"
)

const keysTestSecret = "keys-command-test-secret-0123456789"

func runKeys(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(context.Background(), append([]string{"keys"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func writeSecret(t *testing.T, dir, secret string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, "farm.key")
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFarmKeysCommand: `fastrojan keys` shows the epoch, fingerprints, next change and rotation of a
// secret at a moment, the same from a config file as from the secret file, and never the secret; the
// keys and the sysctl line only when asked, and then exactly the line the kernel test checks.
func TestFarmKeysCommand(t *testing.T) {
	dir := t.TempDir()
	secretFile := writeSecret(t, dir, keysTestSecret, 0o600)
	f, err := farm.New([]byte(keysTestSecret), farm.DefaultInterval, farm.DefaultSkew)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 23, 23, 59, 0, 0, time.UTC) // within 2·skew of the boundary
	ks := f.KeysAt(at)

	code, out, errOut := runKeys(t, "--secret-file", secretFile, "--at", at.Format(time.RFC3339))
	if code != 0 {
		t.Fatalf("keys: exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"epoch:           " + itoa(ks.Epoch) + " (2026-11-23T00:00:00Z to 2026-11-24T00:00:00Z)",
		"primary key:     epoch " + itoa(ks.Epoch) + ", fingerprint " + ks.Primary.Fingerprint(),
		"backup key:      epoch " + itoa(ks.Epoch+1) + ", fingerprint " + ks.Backup.Fingerprint(),
		"next change:     2026-11-24T00:00:00Z: primary epoch " + itoa(ks.Epoch+1) + ", backup epoch " + itoa(ks.Epoch),
		"next rotation:   2026-11-24T00:00:00Z",
		"cookie lifetime: at least 23h56m0s",
		"--sysctl",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	noSecrets := func(what, s string) {
		t.Helper()
		for _, leak := range []string{keysTestSecret, hex.EncodeToString(ks.Primary[:]), hex.EncodeToString(ks.Backup[:]), ks.SysctlValue()[:8]} {
			if strings.Contains(s, leak) {
				t.Errorf("%s shows secret material %q:\n%s", what, leak, s)
			}
		}
	}
	noSecrets("keys", out+errOut)

	// The same farm from a config file (inline secret and secret_file) gives the same keys.
	inline := filepath.Join(dir, "inline.json")
	os.WriteFile(inline, []byte(`{"run_type":"server","fastrojan":{"farm":{"secret":"`+keysTestSecret+`"}}}`), 0o600)
	byFile := filepath.Join(dir, "file.json")
	os.WriteFile(byFile, []byte(`{"run_type":"server","fastrojan":{"farm":{"secret_file":"`+secretFile+`"}}}`), 0o600)
	for _, cfg := range []string{inline, byFile} {
		code, cout, cerr := runKeys(t, "-c", cfg, "--at", itoa(at.Unix()))
		if code != 0 {
			t.Fatalf("keys -c %s: exit %d: %s", cfg, code, cerr)
		}
		if !strings.Contains(cout, "fingerprint "+ks.Primary.Fingerprint()) || !strings.Contains(cout, "fingerprint "+ks.Backup.Fingerprint()) {
			t.Errorf("keys -c %s disagrees with --secret-file:\n%s", cfg, cout)
		}
		noSecrets("keys -c", cout+cerr)
	}
	// A different rotation is a different farm.
	if _, hourly, _ := runKeys(t, "--secret-file", secretFile, "--rotation", "1h", "--at", itoa(at.Unix())); strings.Contains(hourly, ks.Primary.Fingerprint()) {
		t.Error("a 1h rotation shows the 24h farm's key")
	}

	// Asked explicitly: the keys and the sysctl line, exactly what TestFarmSysctlMatchesSetsockopt
	// proves equivalent to TCP_FASTOPEN_KEY.
	code, out, _ = runKeys(t, "--secret-file", secretFile, "--at", at.Format(time.RFC3339), "--show-keys")
	if code != 0 || !strings.Contains(out, "sysctl:          "+ks.SysctlLine()+"\n") || !strings.Contains(out, hex.EncodeToString(ks.Primary[:])) {
		t.Errorf("--show-keys: exit %d, want the keys and %s:\n%s", code, ks.SysctlLine(), out)
	}
	if strings.Contains(out, keysTestSecret) {
		t.Errorf("--show-keys shows the secret itself:\n%s", out)
	}
	code, out, _ = runKeys(t, "--secret-file", secretFile, "--at", at.Format(time.RFC3339), "--sysctl")
	if code != 0 || out != ks.SysctlLine()+"\n" {
		t.Errorf("--sysctl: exit %d, output %q, want %q", code, out, ks.SysctlLine()+"\n")
	}
}

func TestFarmKeysCommandErrors(t *testing.T) {
	dir := t.TempDir()
	noFarm := filepath.Join(dir, "nofarm.json")
	os.WriteFile(noFarm, []byte(`{"run_type":"server"}`), 0o600)
	if code, _, errOut := runKeys(t, "-c", noFarm); code != exitFail || !strings.Contains(errOut, "behind one address") {
		t.Errorf("config without a secret: exit %d, %q; want 1 and the advice", code, errOut)
	}
	if code, _, _ := runKeys(t); code != exitUsage {
		t.Errorf("no source: exit %d, want %d", code, exitUsage)
	}
	if code, _, errOut := runKeys(t, "--secret-file", "x", "--at", "tomorrow"); code != exitUsage || !strings.Contains(errOut, "RFC 3339") {
		t.Errorf("bad --at: exit %d, %q", code, errOut)
	}
	if runtime.GOOS != "windows" {
		shared := writeSecret(t, dir, keysTestSecret, 0o640)
		code, out, errOut := runKeys(t, "--secret-file", shared)
		if code != exitFail || !strings.Contains(errOut, "accessible to group or others") || strings.Contains(out+errOut, keysTestSecret) {
			t.Errorf("group-readable secret file: exit %d, %q", code, errOut)
		}
	}

	// --new-secret writes a usable private secret, once.
	fresh := filepath.Join(dir, "new.key")
	if code, out, errOut := runKeys(t, "--new-secret", fresh); code != 0 || !strings.Contains(out, "wrote a new farm secret") {
		t.Fatalf("--new-secret: exit %d, %q %q", code, out, errOut)
	}
	if code, _, errOut := runKeys(t, "--secret-file", fresh); code != 0 {
		t.Errorf("keys on a new secret: exit %d, %s", code, errOut)
	}
	if code, _, _ := runKeys(t, "--new-secret", fresh); code != exitFail {
		t.Errorf("--new-secret over an existing file: exit %d, want 1", code)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
