//go:build !linux

package netlab

import (
	"errors"
	"fmt"
	"os/exec"
)

var errUnsupported = fmt.Errorf("netlab: network namespaces and TUN devices need Linux: %w", errors.ErrUnsupported)

type hostSys struct{}

type forwarder struct{}

func unavailable() string { return "needs Linux (network namespaces and TUN devices)" }

// Open returns an error wrapping errors.ErrUnsupported: the lab needs Linux.
func Open() (*Lab, error) { return nil, errUnsupported }

// AddHost returns an error wrapping errors.ErrUnsupported.
func (l *Lab) AddHost(name string, opts HostOptions) (*Host, error) { return nil, errUnsupported }

// Connect returns an error wrapping errors.ErrUnsupported.
func (l *Lab) Connect(a, b *Host, opts LinkOptions) (*Link, error) { return nil, errUnsupported }

// ConnectECMP returns an error wrapping errors.ErrUnsupported.
func (l *Lab) ConnectECMP(a *Host, bs []*Host, opts LinkOptions) (*Link, error) {
	return nil, errUnsupported
}

// Close does nothing.
func (l *Lab) Close() error { return nil }

// Do returns an error wrapping errors.ErrUnsupported.
func (h *Host) Do(fn func() error) error { return errUnsupported }

// Command returns a command whose Start fails with errors.ErrUnsupported.
func (h *Host) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Err = errUnsupported
	return cmd
}

// Sysctl returns an error wrapping errors.ErrUnsupported.
func (h *Host) Sysctl(key, value string) error { return errUnsupported }

// ReadSysctl returns an error wrapping errors.ErrUnsupported.
func (h *Host) ReadSysctl(key string) (string, error) { return "", errUnsupported }

// TcpExt returns an error wrapping errors.ErrUnsupported.
func (h *Host) TcpExt() (map[string]uint64, error) { return nil, errUnsupported }

// LabNamespaces returns an error wrapping errors.ErrUnsupported.
func LabNamespaces() ([]string, error) { return nil, errUnsupported }

// SweepStale returns an error wrapping errors.ErrUnsupported.
func SweepStale() ([]string, error) { return nil, errUnsupported }

// SweepAll returns an error wrapping errors.ErrUnsupported.
func SweepAll() ([]string, error) { return nil, errUnsupported }
