//go:build !linux

package inbound

import (
	"errors"
	"net/netip"
	"testing"
)

func TestNATUnsupportedOffLinux(t *testing.T) {
	if NATSupported {
		t.Fatal("NATSupported on a system without netfilter")
	}
	_, err1 := OriginalDst(nil)
	_, err2 := ListenTProxyUDP("127.0.0.1:0")
	_, err3 := ListenTProxyReply(netip.MustParseAddrPort("192.0.2.1:53"))
	for _, err := range []error{err1, err2, err3} {
		if !errors.Is(err, errors.ErrUnsupported) {
			t.Fatalf("err = %v, want errors.ErrUnsupported", err)
		}
	}
}
