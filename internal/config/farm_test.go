package config

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestFarmConfigDefaults(t *testing.T) {
	c, err := Decode([]byte(`{"fastrojan":{"farm":{"secret_file":"/etc/f.key"}}}`), "x.json")
	if err != nil {
		t.Fatal(err)
	}
	f := c.Fastrojan.Farm
	if f.Rotation.Std() != 24*time.Hour || f.Skew.Std() != time.Minute || f.SecretFile != "/etc/f.key" || !f.Configured() {
		t.Errorf("farm with only secret_file: %+v; want rotation 24h, skew 1m, configured", f)
	}
	c, err = Decode([]byte(`{}`), "x.json")
	if err != nil {
		t.Fatal(err)
	}
	if c.Fastrojan.Farm.Configured() {
		t.Errorf("a config without farm reports a secret: %+v", c.Fastrojan.Farm)
	}
}

func TestFarmConfigValidate(t *testing.T) {
	dir := t.TempDir()
	cert := writeFile(t, dir, "cert.pem", "x")
	key := writeFile(t, dir, "key.pem", "x")
	private := filepath.Join(dir, "farm-private.key")
	if err := os.WriteFile(private, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	shared := filepath.Join(dir, "farm-shared.key")
	if err := os.WriteFile(shared, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o644); err != nil { // WriteFile's mode is subject to the umask
		t.Fatal(err)
	}
	server := func(mutate func(*Farm)) *Config {
		c := Default(RunServer)
		c.LocalAddr, c.LocalPort = "0.0.0.0", 443
		c.RemoteAddr, c.RemotePort = "127.0.0.1", 80
		c.Password = []string{"pw"}
		c.SSL.Cert, c.SSL.Key = cert, key
		mutate(&c.Fastrojan.Farm)
		return c
	}
	valid := []struct {
		name   string
		mutate func(*Farm)
	}{
		{"no farm", func(*Farm) {}},
		{"private file", func(f *Farm) { f.SecretFile = private }},
		{"inline", func(f *Farm) { f.Secret = "0123456789abcdef" }},
		{"no skew", func(f *Farm) { f.Secret = "0123456789abcdef"; f.Skew = 0; f.Rotation = Duration(time.Minute) }},
		{"rotation exactly 4 skews", func(f *Farm) {
			f.Secret = "0123456789abcdef"
			f.Skew = Duration(time.Minute)
			f.Rotation = Duration(4 * time.Minute)
		}},
	}
	for _, tc := range valid {
		if err := server(tc.mutate).Validate(); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	invalid := []struct {
		name   string
		mutate func(*Farm)
		want   string
	}{
		{"both", func(f *Farm) { f.Secret = "0123456789abcdef"; f.SecretFile = private }, "$.fastrojan.farm.secret: give either secret or secret_file, not both"},
		{"short", func(f *Farm) { f.Secret = "short" }, "$.fastrojan.farm.secret: too short"},
		{"missing file", func(f *Farm) { f.SecretFile = filepath.Join(dir, "nope") }, "$.fastrojan.farm.secret_file: stat"},
		{"directory", func(f *Farm) { f.SecretFile = dir }, "is not a regular file"},
		{"short rotation", func(f *Farm) { f.Rotation = Duration(30 * time.Second) }, "$.fastrojan.farm.rotation: must be a whole number of seconds, at least \"1m\""},
		{"fractional rotation", func(f *Farm) { f.Rotation = Duration(90*time.Second + time.Millisecond) }, "$.fastrojan.farm.rotation: must be a whole number of seconds"},
		{"negative skew", func(f *Farm) { f.Skew = Duration(-time.Second) }, "$.fastrojan.farm.skew: must not be negative"},
		{"skew too large", func(f *Farm) { f.Rotation = Duration(time.Hour); f.Skew = Duration(16 * time.Minute) }, "$.fastrojan.farm.rotation: must be at least 4 × skew (1h4m0s)"},
	}
	if runtime.GOOS != "windows" {
		invalid = append(invalid, struct {
			name   string
			mutate func(*Farm)
			want   string
		}{"world-readable file", func(f *Farm) { f.SecretFile = shared }, "accessible to group or others (mode 0644); refusing to use it as a secret: chmod 600"})
	}
	for _, tc := range invalid {
		err := server(tc.mutate).Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	// A client ignores the farm's secret file (it is a server setting), but not contradictions in it.
	c := Default(RunClient)
	c.LocalAddr, c.LocalPort = "127.0.0.1", 1080
	c.RemoteAddr, c.RemotePort = "example.com", 443
	c.Password = []string{"pw"}
	c.Fastrojan.Farm.SecretFile = shared
	if err := c.Validate(); err != nil {
		t.Errorf("client with a farm secret file it does not use: %v", err)
	}
}
