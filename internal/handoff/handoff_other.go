//go:build !unix

package handoff

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
)

// Inherited reports false: hand-offs need Unix.
func Inherited() bool { return false }

// Listener returns nil: hand-offs need Unix.
func Listener(addr string) (net.Listener, error) { return nil, nil }

// Ready does nothing: hand-offs need Unix.
func Ready() error { return nil }

// Executable is os.Executable.
func Executable() (string, error) { return os.Executable() }

// Upgrade reports errors.ErrUnsupported: hand-offs need Unix.
func Upgrade(ctx context.Context, path string, args []string, lns map[string]net.Listener, stdout, stderr io.Writer) (*os.Process, error) {
	return nil, errors.ErrUnsupported
}
