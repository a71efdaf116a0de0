package config

import (
	"fmt"
	"os"
	"runtime"
	"time"
)

// Defaults of the "fastrojan.farm" object.
const (
	DefaultFarmRotation = 24 * time.Hour
	DefaultFarmSkew     = 60 * time.Second
)

// Farm is the "fastrojan.farm" object: the TFO cookie keys a server shares with the other nodes behind
// the same address (package tfo/farm). A server without a secret uses its kernel's own key. Clients
// ignore it.
type Farm struct {
	Secret     string   `json:"secret"`      // the shared secret inline (prefer secret_file)
	SecretFile string   `json:"secret_file"` // file holding the secret; must not be group- or world-accessible
	Rotation   Duration `json:"rotation"`    // key rotation interval, whole seconds; default 24h
	Skew       Duration `json:"skew"`        // how far any node's clock may be off, either way; default 60s
}

// Configured reports whether a secret is set (inline or as a file).
func (f Farm) Configured() bool { return f.Secret != "" || f.SecretFile != "" }

// DefaultFarm returns the defaults of the "fastrojan.farm" object.
func DefaultFarm() Farm {
	return Farm{Rotation: Duration(DefaultFarmRotation), Skew: Duration(DefaultFarmSkew)}
}

// SecretFileMode checks that a secret file is a regular file that only its owner may access, and
// returns an error saying what to do if not. (Windows has no such mode bits; nothing is checked there.)
func SecretFileMode(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s is accessible to group or others (mode %04o); refusing to use it as a secret: chmod 600 %s",
			path, st.Mode().Perm(), path)
	}
	return nil
}

func (v *validator) farm(f *Farm, server bool) {
	const p = "$.fastrojan.farm"
	if f.Secret != "" && f.SecretFile != "" {
		v.add(p+".secret", "give either secret or secret_file, not both")
	}
	if server && f.SecretFile != "" {
		if err := SecretFileMode(f.SecretFile); err != nil {
			v.errs = append(v.errs, &Error{File: v.file, Path: p + ".secret_file", Msg: err.Error(), Err: err})
		}
	}
	if f.Secret != "" && len(f.Secret) < 16 {
		v.add(p+".secret", "too short: at least 16 bytes (generate one with `fastrojan keys --new-secret FILE` and use secret_file)")
	}
	rot, skew := time.Duration(f.Rotation), time.Duration(f.Skew)
	if rot < time.Minute || rot%time.Second != 0 {
		v.add(p+".rotation", "must be a whole number of seconds, at least \"1m\", got %s", f.Rotation)
	}
	if skew < 0 {
		v.add(p+".skew", "must not be negative, got %s", f.Skew)
	} else if rot < 4*skew {
		v.add(p+".rotation", "must be at least 4 × skew (%s), got %s", 4*skew, f.Rotation)
	}
}
