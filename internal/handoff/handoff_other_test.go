//go:build !unix

package handoff

import (
	"context"
	"errors"
	"testing"
)

func TestUpgradeUnsupported(t *testing.T) {
	if _, err := Upgrade(context.Background(), "x", nil, nil, nil, nil); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("err = %v, want errors.ErrUnsupported", err)
	}
}
