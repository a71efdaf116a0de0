package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A server may run without config passwords when a user database holds its users; the users object
// is checked and names the bad key.
func TestUsersValidated(t *testing.T) {
	dir := t.TempDir()
	cert := filepath.Join(dir, "c.pem")
	if err := os.WriteFile(cert, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	server := func(f func(c *Config)) error {
		c := Default(RunServer)
		c.LocalAddr, c.LocalPort, c.RemoteAddr, c.RemotePort = "127.0.0.1", 443, "127.0.0.1", 80
		c.SSL.Cert, c.SSL.Key = cert, cert
		f(c)
		return c.Validate()
	}
	for _, tc := range []struct {
		name string
		f    func(c *Config)
		key  string // "" = valid
	}{
		{"no passwords, no database", func(c *Config) {}, "$.password"},
		{"sqlite, no passwords", func(c *Config) { c.Fastrojan.Users.SQLite = "/var/lib/u.db" }, ""},
		{"mysql, no passwords", func(c *Config) { c.MySQL.Enabled = true }, ""},
		{"both databases", func(c *Config) { c.MySQL.Enabled = true; c.Fastrojan.Users.SQLite = "u.db" }, "$.fastrojan.users.sqlite"},
		{"zero refresh", func(c *Config) { c.Password = []string{"p"}; c.Fastrojan.Users.Refresh = 0 }, "$.fastrojan.users.refresh"},
		{"slow refresh", func(c *Config) { c.Password = []string{"p"}; c.Fastrojan.Users.Refresh = Duration(time.Hour) }, "$.fastrojan.users.refresh"},
		{"negative flush", func(c *Config) { c.Password = []string{"p"}; c.Fastrojan.Users.Flush = -1 }, "$.fastrojan.users.flush"},
	} {
		err := server(tc.f)
		switch {
		case tc.key == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.key != "" && (err == nil || !strings.Contains(err.Error(), tc.key)):
			t.Errorf("%s: err = %v, want one naming %s", tc.name, err, tc.key)
		}
	}
	d := Default(RunServer).Fastrojan.Users
	if d.Refresh.Std() != DefaultUsersRefresh || d.Flush.Std() != DefaultUsersFlush {
		t.Errorf("defaults: %+v", d)
	}
}
