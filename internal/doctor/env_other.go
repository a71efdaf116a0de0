//go:build !linux

package doctor

import (
	"errors"
	"fmt"
	"time"
)

func readSysctl(key string) (string, error) {
	return "", fmt.Errorf("sysctl %s: %w", key, errors.ErrUnsupported)
}

func readNetstat() ([]byte, error) {
	return nil, fmt.Errorf("netstat: %w", errors.ErrUnsupported)
}

func kernelRelease() (string, error) {
	return "", fmt.Errorf("kernel version: %w", errors.ErrUnsupported)
}

func uptime() (time.Duration, error) {
	return 0, fmt.Errorf("uptime: %w", errors.ErrUnsupported)
}
