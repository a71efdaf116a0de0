// Package statedir is what the zero-config `fastrojan server` keeps between runs, and where: a
// random password, a self-signed certificate when one is asked for, the printed link; in systemd's
// StateDirectory, root's /var/lib/fastrojan, or the user's XDG state directory.
package statedir

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"

	"github.com/fastrojan/fastrojan/internal/tlsconf"
)

// State is what `fastrojan server` keeps in its state directory.
type State struct {
	CertFile, KeyFile string // the self-signed certificate (made only when asked for)
	Password          string
	Created           bool // something was made on this call
}

// LoadOrCreate returns the state in dir, creating what is missing: a random password and, with
// selfSigned, a self-signed certificate for host, readable by the owner only.
func LoadOrCreate(dir, host string, selfSigned bool) (State, error) {
	st := State{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem")}
	pwFile := filepath.Join(dir, "password")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return st, fmt.Errorf("state directory: %w", err)
	}
	pw, err := os.ReadFile(pwFile)
	switch {
	case err == nil:
		st.Password = string(trimNewline(pw))
	case errors.Is(err, fs.ErrNotExist):
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		st.Password = hex.EncodeToString(b)
		if err := os.WriteFile(pwFile, []byte(st.Password+"\n"), 0o600); err != nil {
			return st, fmt.Errorf("write password: %w", err)
		}
		st.Created = true
	default:
		return st, fmt.Errorf("read password: %w", err)
	}
	if st.Password == "" {
		return st, fmt.Errorf("%s is empty: delete it to generate a new password", pwFile)
	}
	if _, err := os.Stat(st.CertFile); selfSigned && errors.Is(err, fs.ErrNotExist) {
		hosts := []string{host, "localhost", "127.0.0.1", "::1"}
		certPEM, keyPEM, err := tlsconf.GenerateSelfSigned(hosts)
		if err != nil {
			return st, fmt.Errorf("generate certificate: %w", err)
		}
		if err := os.WriteFile(st.KeyFile, keyPEM, 0o600); err != nil {
			return st, fmt.Errorf("write key: %w", err)
		}
		if err := os.WriteFile(st.CertFile, certPEM, 0o644); err != nil {
			return st, fmt.Errorf("write certificate: %w", err)
		}
		st.Created = true
	}
	return st, nil
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// Default follows systemd's StateDirectory, then root's /var/lib, then XDG.
func Default() string {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/lib/fastrojan"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "fastrojan")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "fastrojan")
	}
	return "fastrojan-state"
}

// GuessPublicHost returns this host's first global unicast address, preferring a public one, so the
// printed link works from elsewhere; the host name if there is none.
func GuessPublicHost() string {
	addrs, _ := net.InterfaceAddrs()
	var private string
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || !ipn.IP.IsGlobalUnicast() || ipn.IP.To4() == nil {
			continue
		}
		if !ipn.IP.IsPrivate() {
			return ipn.IP.String()
		}
		if private == "" {
			private = ipn.IP.String()
		}
	}
	if private != "" {
		return private
	}
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return "localhost"
}
