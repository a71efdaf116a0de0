package outbound

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"github.com/fastrojan/fastrojan/internal/tfo/pathstate"
)

// TestServerAddrsOrder: a name's addresses are interleaved by family starting with the resolver's
// first, or with IPv4 when PreferIPv4 is set (trojan-gfw's tcp.prefer_ipv4).
func TestServerAddrsOrder(t *testing.T) {
	resolved := []netip.Addr{
		netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"),
		netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"),
	}
	for _, tc := range []struct {
		preferIPv4 bool
		want       []string
	}{
		{false, []string{"[2001:db8::1]:443", "192.0.2.1:443", "[2001:db8::2]:443", "192.0.2.2:443"}},
		{true, []string{"192.0.2.1:443", "[2001:db8::1]:443", "192.0.2.2:443", "[2001:db8::2]:443"}},
	} {
		tr := &Trojan{
			Server:     "proxy.example:443",
			Paths:      pathstate.New(pathstate.Options{}),
			PreferIPv4: tc.preferIPv4,
			Resolve: func(context.Context, string) ([]netip.Addr, error) {
				return resolved, nil
			},
		}
		got, err := tr.serverAddrs(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("PreferIPv4=%v: %v, want %v", tc.preferIPv4, got, tc.want)
		}
	}
}
