package farm

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/fastrojan/fastrojan/internal/config"
)

// LoadSecret reads a secret file: its content with surrounding white space removed. A file that its
// group or others may access, or that is not a regular file, is refused.
func LoadSecret(path string) ([]byte, error) {
	if err := config.SecretFileMode(path); err != nil {
		return nil, fmt.Errorf("farm secret file: %w", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("farm secret file: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, fmt.Errorf("farm secret file %s is empty", path)
	}
	return b, nil
}

// FromConfig builds the farm a config's "fastrojan.farm" object describes, reading the secret file if
// there is one. Without a secret it returns ErrNoSecret (doctor reports it as advice; a server then
// leaves the kernel's key alone).
func FromConfig(c config.Farm) (*Farm, error) {
	var secret []byte
	switch {
	case c.Secret != "" && c.SecretFile != "":
		return nil, errors.New("fastrojan.farm: give either secret or secret_file, not both")
	case c.SecretFile != "":
		var err error
		if secret, err = LoadSecret(c.SecretFile); err != nil {
			return nil, err
		}
	case c.Secret != "":
		secret = []byte(c.Secret)
	default:
		return nil, ErrNoSecret
	}
	return New(secret, time.Duration(c.Rotation), time.Duration(c.Skew))
}

// NewSecretFile writes a new random secret (32 bytes, as 64 hexadecimal characters and a newline) to
// path, readable by its owner only. It refuses to overwrite an existing file.
func NewSecretFile(path string) error {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return fmt.Errorf("new farm secret: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("new farm secret: %s already exists; not overwriting it (a farm keeps one secret on every node)", path)
	}
	if err != nil {
		return fmt.Errorf("new farm secret: %w", err)
	}
	_, werr := f.WriteString(hex.EncodeToString(raw[:]) + "\n")
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(path)
		return fmt.Errorf("new farm secret: write %s: %w", path, werr)
	}
	return nil
}
