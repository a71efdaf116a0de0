package server

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"
)

// TestFallbackByALPN: a prober that negotiates h2 goes to the h2 site (trojan-gfw's
// ssl.alpn_port_override); one that negotiates http/1.1 goes to the default fallback.
func TestFallbackByALPN(t *testing.T) {
	plain := startFallback(t)
	h2 := startFallback(t)
	srv := startServer(t, func(o *Options) {
		o.TLSConfig.NextProtos = []string{"h2", "http/1.1"}
		o.Fallback = plain.addr
		o.FallbackByALPN = map[string]string{"h2": h2.addr}
	})
	for _, tc := range []struct {
		proto string
		site  *fallbackSite
		other *fallbackSite
	}{{"h2", h2, plain}, {"http/1.1", plain, h2}} {
		t.Run(tc.proto, func(t *testing.T) {
			raw, err := net.DialTimeout("tcp", srv.addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{tc.proto}})
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			if got := c.ConnectionState().NegotiatedProtocol; got != tc.proto {
				t.Fatalf("negotiated %q", got)
			}
			if _, err := io.ReadAll(c); err != nil {
				t.Fatal(err)
			}
			c.Close() // ends the recording at once instead of after the server's grace period
			if r := tc.site.next(t); string(r.got) != "GET / HTTP/1.0\r\n\r\n" {
				t.Fatalf("%s site recorded %q", tc.proto, r.got)
			}
			<-tc.site.opened // this connection's; the other site must have none
			tc.other.none(t, 100*time.Millisecond)
		})
	}
}

func TestFallbackByALPNRejectsBadAddress(t *testing.T) {
	_, err := New(Options{TLSConfig: &tls.Config{}, Users: testStore(), FallbackByALPN: map[string]string{"h2": "no-port"}})
	if err == nil {
		t.Fatal("New accepted an ALPN fallback without a port")
	}
}
