package tcpopt

import (
	"context"
	"errors"
	"net"
	"slices"
	"syscall"
	"testing"

	"github.com/fastrojan/fastrojan/internal/config"
)

// TestPreferIPv4Dial: with tcp.prefer_ipv4 a name is dialled over IPv4 first, then IPv6; the error
// reported is the one of the family the name has; addresses are dialled as given.
func TestPreferIPv4Dial(t *testing.T) {
	refused := &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}
	noAddr := &net.OpError{Op: "dial", Err: &net.AddrError{Err: "no suitable address found", Addr: "x"}}
	ok := &net.TCPConn{}
	for _, tc := range []struct {
		name      string
		addr      string
		results   map[string]error // per network; missing: success
		wantCalls []string
		wantErr   error
	}{
		{"v4 works", "example.net:443", nil, []string{"tcp4"}, nil},
		{"v4 refused, v6 works", "example.net:443", map[string]error{"tcp4": refused}, []string{"tcp4", "tcp6"}, nil},
		{"no v4 address, v6 refused", "example.net:443", map[string]error{"tcp4": noAddr, "tcp6": refused}, []string{"tcp4", "tcp6"}, refused},
		{"v4 refused, no v6 address", "example.net:443", map[string]error{"tcp4": refused, "tcp6": noAddr}, []string{"tcp4", "tcp6"}, refused},
		{"IPv6 literal", "[2001:db8::1]:443", nil, []string{"tcp"}, nil},
		{"IPv4 literal", "192.0.2.1:443", nil, []string{"tcp"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls []string
			dial := func(_ context.Context, network, _ string) (net.Conn, error) {
				calls = append(calls, network)
				if err := tc.results[network]; err != nil {
					return nil, err
				}
				return ok, nil
			}
			opts := config.Default("client").TCP
			opts.PreferIPv4 = true
			c, err := PreferIPv4(opts, dial)(t.Context(), "tcp", tc.addr)
			if !slices.Equal(calls, tc.wantCalls) {
				t.Fatalf("dialled %v, want %v", calls, tc.wantCalls)
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || c != nil {
					t.Fatalf("got %v, %v; want error %v", c, err, tc.wantErr)
				}
			} else if err != nil || c != ok {
				t.Fatalf("got %v, %v; want the connection", c, err)
			}
		})
	}
	off := config.Default("client").TCP
	if PreferIPv4(off, func(context.Context, string, string) (net.Conn, error) { return nil, nil }) == nil {
		t.Fatal("prefer_ipv4 off must leave the dial as it is, not drop it")
	}
}
