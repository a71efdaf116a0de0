package inbound

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/fastrojan/fastrojan/internal/trojan"
)

// MaxHTTPHead bounds the request line plus headers of an HTTP proxy request.
const MaxHTTPHead = 16 << 10

// HTTPRequest is what an HTTP proxy client asked for.
type HTTPRequest struct {
	Dest trojan.Addr
	// Connect is true for CONNECT: the caller answers with HTTPConnectOK and then relays raw bytes.
	Connect bool
	// Head, for any other method, is the request to send to the origin: the request line in origin
	// form (path and query), the client's headers without the proxy's hop-by-hop ones, and
	// "Connection: close", so that the next request, perhaps for another host, comes on a new
	// connection. The body, if any, follows in the stream unchanged.
	Head []byte
}

// HTTPConnectOK is the answer to a CONNECT once the tunnel is set up.
const HTTPConnectOK = "HTTP/1.1 200 Connection established\r\n\r\n"

// ErrHTTPHeadTooLarge is returned when the request head exceeds MaxHTTPHead.
var ErrHTTPHeadTooLarge = errors.New("http proxy: request head too large")

// hopByHop are the headers that concern only the connection to the proxy.
var hopByHop = map[string]bool{
	"connection":          true,
	"proxy-connection":    true,
	"keep-alive":          true,
	"proxy-authorization": true,
	"proxy-authenticate":  true,
	"te":                  true,
	"trailer":             true,
	"upgrade":             true,
}

// ReadHTTPProxy reads one HTTP proxy request head from r: CONNECT host:port, or a request with an
// absolute http:// URI. It reads nothing beyond the head.
func ReadHTTPProxy(r *bufio.Reader) (HTTPRequest, error) {
	var req HTTPRequest
	line, err := readHTTPLine(r, MaxHTTPHead)
	if err != nil {
		return req, fmt.Errorf("http proxy request line: %w", err)
	}
	used := len(line) + 2
	method, rest, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || method == "" || target == "" || !strings.HasPrefix(proto, "HTTP/1.") || len(proto) != 8 {
		return req, fmt.Errorf("http proxy: malformed request line %.64q", line)
	}
	var headers []string
	hasHost := false
	for {
		h, err := readHTTPLine(r, MaxHTTPHead-used)
		if err != nil {
			return req, fmt.Errorf("http proxy headers: %w", err)
		}
		used += len(h) + 2
		if h == "" {
			break
		}
		name, _, ok := strings.Cut(h, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return req, fmt.Errorf("http proxy: malformed header line %.64q", h)
		}
		lname := strings.ToLower(name)
		if lname == "host" {
			hasHost = true
		}
		if !hopByHop[lname] {
			headers = append(headers, h)
		}
	}

	if method == "CONNECT" {
		d, err := hostPortAddr(target, "")
		if err != nil {
			return req, fmt.Errorf("http proxy CONNECT %.64q: %w", target, err)
		}
		req.Dest, req.Connect = d, true
		return req, nil
	}
	u, err := url.ParseRequestURI(target)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return req, fmt.Errorf("http proxy: %s needs an absolute http:// URI, got %.64q", method, target)
	}
	d, err := hostPortAddr(u.Host, "80")
	if err != nil {
		return req, fmt.Errorf("http proxy %.64q: %w", target, err)
	}
	req.Dest = d
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	if u.RawQuery != "" || u.ForceQuery {
		path += "?" + u.RawQuery
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s %s\r\n", method, path, proto)
	if !hasHost {
		fmt.Fprintf(&b, "Host: %s\r\n", u.Host)
	}
	for _, h := range headers {
		b.WriteString(h)
		b.WriteString("\r\n")
	}
	b.WriteString("Connection: close\r\n\r\n")
	req.Head = b.Bytes()
	return req, nil
}

// WriteHTTPError answers an HTTP proxy client that its request failed, and says why in the body.
func WriteHTTPError(w io.Writer, code int, text string) error {
	status := strconv.Itoa(code) + " " + httpStatusText(code)
	_, err := fmt.Fprintf(w, "HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s\n",
		status, len(text)+1, text)
	return err
}

func httpStatusText(code int) string {
	switch code {
	case 400:
		return "Bad Request"
	case 431:
		return "Request Header Fields Too Large"
	case 502:
		return "Bad Gateway"
	}
	return "Error"
}

// readHTTPLine reads one CRLF- (or LF-) terminated line of at most limit bytes.
func readHTTPLine(r *bufio.Reader, limit int) (string, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(line)+len(frag) > limit {
			return "", ErrHTTPHeadTooLarge
		}
		line = append(line, frag...)
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
	}
	line = bytes.TrimSuffix(line[:len(line)-1], []byte("\r"))
	return string(line), nil
}

// hostPortAddr parses host:port (the port may be omitted when defPort is set; IPv6 in brackets).
func hostPortAddr(hostport, defPort string) (trojan.Addr, error) {
	if _, _, err := net.SplitHostPort(hostport); err != nil && defPort != "" {
		h := strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
		hostport = net.JoinHostPort(h, defPort)
	}
	return trojan.ParseAddrString(hostport)
}
