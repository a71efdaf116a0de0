//go:build !linux

package tcpmetrics

import (
	"errors"
	"fmt"
)

// Dump is Linux-only: other systems have no tcp_metrics cache to read.
func Dump() ([]Entry, error) {
	return nil, fmt.Errorf("tcp_metrics: %w", errors.ErrUnsupported)
}
