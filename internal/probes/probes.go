// Package probes is a set of non-TLS inputs that active probers send to a TLS port, and a runner that
// records how a server answers each: the bytes it sends back, how the connection ends (FIN, RST or
// still open) and when. Comparing two servers' records tells whether one can be told from the other
// by these probes; the server tests compare fastrojan with nginx this way.
package probes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Probe is one input: Payload is written at once after connecting; with HalfClose the prober then
// sends a FIN (as `printf ... | nc -N` does).
type Probe struct {
	Name      string
	Payload   []byte
	HalfClose bool
}

// End is how a connection ended as seen by the prober.
type End string

const (
	EndFIN  End = "fin"  // the server closed (read returned EOF)
	EndRST  End = "rst"  // the server reset the connection
	EndOpen End = "open" // still open when the observation window ended
	EndErr  End = "error"
)

// Result is what a server did with one probe.
type Result struct {
	Probe   string
	Data    []byte        // everything received, up to MaxRead bytes
	End     End           // how the connection ended
	Elapsed time.Duration // from the payload written to the end (the window for EndOpen)
	Err     error         // EndErr: connecting or writing failed
}

// MaxRead bounds what a probe reads from a server.
const MaxRead = 64 << 10

func garbage(seed uint64, n int, highFirst bool) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	if highFirst {
		b[0] |= 0x80
	} else {
		b[0] = 0x21 + b[0]%0x5e // printable, not 0x16
	}
	return b
}

func longURI() []byte {
	return []byte("GET /" + strings.Repeat("a", 9000) + " HTTP/1.1\r\nHost: localhost\r\n\r\n")
}

// List returns the 34 probes.
func List() []Probe {
	p := func(name, s string) Probe { return Probe{Name: name, Payload: []byte(s)} }
	fin := func(name, s string) Probe { return Probe{Name: name, Payload: []byte(s), HalfClose: true} }
	return []Probe{
		p("silent", ""),
		fin("silent-fin", ""),
		p("get-http10", "GET / HTTP/1.0\r\n\r\n"),
		p("get-http11", "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"),
		p("get-http11-nohost", "GET / HTTP/1.1\r\n\r\n"),
		p("head-http10", "HEAD / HTTP/1.0\r\n\r\n"),
		p("head-http11", "HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n"),
		p("post-body", "POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 11\r\n\r\nuser=a&pw=b"),
		p("connect", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
		p("options-star", "OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n"),
		p("get-absolute", "GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nUser-Agent: Mozilla/5.0\r\nAccept: */*\r\n\r\n"),
		p("get-http09", "GET /\r\n"),
		p("http2-preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
		p("pipelined", "GET / HTTP/1.1\r\nHost: localhost\r\n\r\nGET /a HTTP/1.1\r\nHost: localhost\r\n\r\n"),
		fin("get-fin", "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"),
		p("byte-G", "G"),
		p("byte-nul", "\x00"),
		p("byte-ff", "\xff"),
		p("byte-lf", "\n"),
		p("bytes-crlf", "\r\n"),
		p("bytes-GET", "GET"),
		p("crlf-crlf", "\r\n\r\n"),
		p("partial-request-line", "GET / HTT"),
		p("partial-header", "GET / HTTP/1.1\r\nHost: localhost"),
		fin("partial-fin", "GET / HTTP/1.1\r\nHost: local"),
		p("lowercase-method", "get / HTTP/1.1\r\nHost: localhost\r\n\r\n"),
		p("bad-version", "GET / HTTP/3.0\r\nHost: localhost\r\n\r\n"),
		p("bad-header", "GET / HTTP/1.1\r\nHost localhost\r\n\r\n"),
		p("long-uri", string(longURI())),
		p("ssh-banner", "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"),
		p("socks5", "\x05\x01\x00"),
		p("socks4", "\x04\x01\x00\x50\x7f\x00\x00\x01\x00"),
		{Name: "garbage-ascii", Payload: garbage(1, 64, false)},
		{Name: "garbage-high", Payload: garbage(2, 512, true)},
	}
}

// Extra returns 49 more inputs, kept apart from List: odd corners of HTTP parsing (HTTP/0.9 HEAD,
// folded and duplicate headers, bad versions, dot segments, oversized headers, a body still to come),
// user agents nginx pads error pages for, SSLv2-style hellos, other protocols (RTSP, Redis, telnet,
// RDP, JSON-RPC). The built-in answers were not tuned on List alone.
func Extra() []Probe {
	p := func(name, s string) Probe { return Probe{Name: name, Payload: []byte(s)} }
	return []Probe{p("ff00", "\xff\x00"), p("ff5", "\xff\x00\x00\x00\x00"),
		p("80hello", "\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10"),
		p("http09-head", "HEAD /\r\n"), p("http09-post", "POST /\r\n"), p("http10-nohost", "GET / HTTP/1.0\r\nX: y\r\n\r\n"),
		p("underscore-hdr", "GET / HTTP/1.1\r\nHost: a\r\nX_Y: z\r\n\r\n"), p("big-header", "GET / HTTP/1.1\r\nHost: a\r\nX: "+strings.Repeat("b", 9000)+"\r\n\r\n"),
		p("lf-only", "GET / HTTP/1.1\nHost: a\n\n"), p("post-cl-more", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nab"),
		p("after-400-more", "\x00"+strings.Repeat("z", 100000)), p("bad-host", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), p("two-host", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
		p("http12", "GET / HTTP/1.2\r\nHost: a\r\n\r\n"), p("http2", "GET / HTTP/2.0\r\nHost: a\r\n\r\n"), p("httpx", "GET / HTXP/1.1\r\n\r\n"), p("space", " "), p("tab", "\t"), p("A", "A"),
		p("get-space", "GET "), p("sp-uri", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), p("uri-nosl", "GET a HTTP/1.1\r\n\r\n"), p("dotdot", "GET /../ HTTP/1.1\r\nHost: a\r\n\r\n"), p("te", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
		p("crlfG", "\r\nG"), p("CR", "\r"), p("del", "\x7f"), p("trace", "TRACE / HTTP/1.1\r\nHost: a\r\n\r\n"), p("delete", "DELETE / HTTP/1.1\r\nHost: a\r\n\r\n"),
		p("query", "GET /?a=b HTTP/1.1\r\nHost: a\r\n\r\n"), p("pct", "GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n"), p("rtsp", "OPTIONS rtsp://x/ RTSP/1.0\r\nCSeq: 1\r\n\r\n"),
		p("redis", "*1\r\n$4\r\nPING\r\n"), p("json", "{\"jsonrpc\":\"2.0\"}\n"), p("telnet", "\xff\xfb\x01\xff\xfb\x03"), p("rdp", "\x03\x00\x00\x13\x0e\xe0\x00\x00\x00\x00\x00\x01\x00\x08\x00\x03\x00\x00\x00"),
		p("host-port", "GET / HTTP/1.1\r\nHost: a:443\r\n\r\n"), p("fold", "GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n"), p("cl-bad", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n"),
		p("msie", "GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: Mozilla/4.0 (compatible; MSIE 6.0)\r\n\r\n"),
		p("chrome", "GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\r\n\r\n"),
		p("chrome-badhdr", "GET / HTTP/1.1\r\nUser-Agent: x Chrome/1\r\nHost localhost\r\n\r\n"),
		p("chrome-head", "HEAD / HTTP/1.1\r\nHost: a\r\nUser-Agent: x Chrome/1\r\n\r\n"),
		p("head-badhdr", "HEAD / HTTP/1.1\r\nHost localhost\r\n\r\n"),
		p("head-badver", "HEAD / HTTP/2.0\r\nHost: a\r\n\r\n"),
		p("head-baduri", "HEAD a HTTP/1.1\r\nHost: a\r\n\r\n"),
		p("firefox", "GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n\r\n"),
		p("sslv2-hello", "\x80\x1c\x01\x03\x01\x00\x03\x00\x00\x00\x10\x00\x00\x2f0123456789abcdef"),
		p("sslv2-short", "\x80\x03\x01\x03\x01"),
	}
}

// Run sends every probe to addr at once, each on its own connection, and returns the results in the
// order of probes. A connection still open after window counts as EndOpen.
func Run(ctx context.Context, addr string, probes []Probe, window time.Duration) []Result {
	res := make([]Result, len(probes))
	var wg sync.WaitGroup
	for i, p := range probes {
		wg.Go(func() { res[i] = runOne(ctx, addr, p, window) })
	}
	wg.Wait()
	return res
}

func runOne(ctx context.Context, addr string, p Probe, window time.Duration) Result {
	r := Result{Probe: p.Name}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		r.End, r.Err = EndErr, fmt.Errorf("dial %s: %w", addr, err)
		return r
	}
	defer c.Close()
	if len(p.Payload) > 0 {
		if _, err := c.Write(p.Payload); err != nil {
			r.End, r.Err = EndErr, fmt.Errorf("write: %w", err)
			return r
		}
	}
	if p.HalfClose {
		_ = c.(*net.TCPConn).CloseWrite()
	}
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(window))
	var buf bytes.Buffer
	_, err = io.Copy(&buf, io.LimitReader(c, MaxRead))
	r.Elapsed = time.Since(start)
	r.Data = buf.Bytes()
	var ne net.Error
	switch {
	case err == nil:
		r.End = EndFIN
	case errors.Is(err, syscall.ECONNRESET):
		r.End = EndRST
	case errors.As(err, &ne) && ne.Timeout():
		r.End, r.Elapsed = EndOpen, window
	default:
		r.End, r.Err = EndErr, err
	}
	return r
}

var dateHeader = regexp.MustCompile(`(?m)^Date: [^\r\n]*\r$`)

// Normalize blanks what legitimately differs between two answers of the same server: the Date header.
func Normalize(b []byte) []byte {
	return dateHeader.ReplaceAll(b, []byte("Date: -\r"))
}

// Tolerance is how far two times-to-close may be apart and still count as the same: the scheduling
// noise of a loaded test machine, far below the differences a prober keys on (immediate vs a timeout).
func Tolerance(ref time.Duration) time.Duration {
	return max(250*time.Millisecond, ref/5)
}

// Same reports whether a and b are indistinguishable: the same bytes (Date aside), the same end and
// times-to-close within Tolerance. Why not, when they differ.
func Same(a, b Result) (bool, string) {
	if !bytes.Equal(Normalize(a.Data), Normalize(b.Data)) {
		return false, fmt.Sprintf("bytes differ: %q vs %q", clip(a.Data), clip(b.Data))
	}
	if a.End != b.End {
		return false, fmt.Sprintf("end differs: %s vs %s", a.End, b.End)
	}
	if d := a.Elapsed - b.Elapsed; d > Tolerance(b.Elapsed) || -d > Tolerance(b.Elapsed) {
		return false, fmt.Sprintf("time to close differs: %v vs %v", a.Elapsed.Round(time.Millisecond), b.Elapsed.Round(time.Millisecond))
	}
	return true, ""
}

func clip(b []byte) []byte {
	if len(b) > 200 {
		return b[:200]
	}
	return b
}
