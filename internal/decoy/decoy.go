// Package decoy decides what a TLS port says to bytes that are not TLS, the way nginx (the commonest
// front of Trojan servers) does on its "listen 443 ssl" port: a plaintext HTTP request gets the
// "400 The plain HTTP request was sent to HTTPS port" page, other garbage the plain 400 page (or 414,
// 505, ...), bytes that look like SSL but are not make nginx's TLS library give up without a word,
// and an incomplete request waits for the header timeout. Judge reads the bytes a client sent so far;
// Response renders the page with the server token and date.
//
// The model follows nginx 1.22's request-line and header parsers (ngx_http_parse.c) closely enough to
// match it on what probers send; the server tests compare the two byte for byte.
package decoy

import (
	"bytes"
	"strconv"
	"strings"
	"time"
)

// Kind is what to do with the bytes seen so far.
type Kind int

const (
	More   Kind = iota // not decided yet: read more, until the header timeout
	Answer             // send Response, then end the connection as nginx does
	Close              // close without sending anything (an SSL record OpenSSL rejects)
	Alert              // send Response (a TLS alert, as OpenSSL does) and close at once
)

// TLS alert descriptions OpenSSL sends to SSLv2-style ClientHellos.
const (
	alertHandshakeFailure = 40
	alertRecordOverflow   = 22
	alertDecodeError      = 50
	alertProtocolVersion  = 70
)

// Page is one of nginx's error pages.
type Page int

const (
	PagePlainHTTP      Page = iota // 400 The plain HTTP request was sent to HTTPS port
	PageBadRequest                 // 400 Bad Request
	PageHeaderTooLarge             // 400 Request Header Or Cookie Too Large
	PageNotAllowed                 // 405 Not Allowed
	PageURITooLarge                // 414 Request-URI Too Large
	PageVersion                    // 505 HTTP Version Not Supported
)

// Verdict is Judge's decision.
type Verdict struct {
	Kind Kind
	Page Page
	// HTTP09: the request was HTTP/0.9, so the answer is the page body alone, without a status line.
	HTTP09 bool
	// Head: a HEAD request, so the answer has no body.
	Head bool
	// BodyPending is how many request body bytes (Content-Length) had not arrived yet: nginx reads and
	// discards them before it closes, rather than half-closing at once.
	BodyPending int64
	// Padding: nginx's msie_padding, appended to error pages for MSIE and Chrome user agents.
	Padding bool
	// AlertDesc and AlertVersion make the TLS alert of an Alert verdict.
	AlertDesc    byte
	AlertVersion uint16
}

// Limits of nginx's default buffers (large_client_header_buffers 4 8k).
const (
	MaxLine   = 8 << 10  // a request line or a header line longer than this is refused
	MaxHeader = 32 << 10 // the whole header
)

// Judge decides what nginx would do with b, the first bytes a client sent on a TLS port. b[0] is not a
// TLS handshake record type (0x16). b is never modified and never retained.
func Judge(b []byte) Verdict {
	if len(b) == 0 {
		return Verdict{Kind: More}
	}
	if b[0]&0x80 != 0 {
		return judgeSSL(b)
	}
	return judgeHTTP(b)
}

// maxSSLv2Record is the longest SSLv2-style record OpenSSL 3 takes into its read buffer; a longer one
// gets a record_overflow alert.
const maxSSLv2Record = 16704

// judgeSSL: nginx hands a first byte with the high bit set (an SSLv2-style record) to OpenSSL. It reads
// a 5-byte header first. A record that is not an SSLv2 ClientHello fails there without a word; a
// ClientHello record is read whole and answered with an alert: handshake_failure for a well-formed
// one (no SSLv2 ciphers or extensions to agree on), protocol_version for one below SSL 3, decode_error
// for a malformed one, record_overflow for one too long to buffer.
func judgeSSL(b []byte) Verdict {
	if len(b) < 5 {
		return Verdict{Kind: More}
	}
	if b[2] != 0x01 {
		return Verdict{Kind: Close}
	}
	alert := func(desc byte, version uint16) Verdict {
		return Verdict{Kind: Alert, AlertDesc: desc, AlertVersion: version}
	}
	n := int(b[0]&0x7f)<<8 | int(b[1])
	if n > maxSSLv2Record {
		return alert(alertRecordOverflow, 0x0303)
	}
	if len(b) < n+2 {
		return Verdict{Kind: More}
	}
	rec := b[2 : n+2]
	if len(rec) < 9 {
		return alert(alertDecodeError, 0x0303)
	}
	version := uint16(rec[1])<<8 | uint16(rec[2])
	cipherLen := int(rec[3])<<8 | int(rec[4])
	sidLen := int(rec[5])<<8 | int(rec[6])
	chalLen := int(rec[7])<<8 | int(rec[8])
	if 9+cipherLen+sidLen+chalLen != len(rec) || cipherLen == 0 || cipherLen%3 != 0 || chalLen < 16 || chalLen > 32 {
		return alert(alertDecodeError, 0x0303)
	}
	if version < 0x0300 {
		return alert(alertProtocolVersion, 0x0303)
	}
	return alert(alertHandshakeFailure, min(version, 0x0303))
}

func bad() Verdict          { return Verdict{Kind: Answer, Page: PageBadRequest} }
func answer(p Page) Verdict { return Verdict{Kind: Answer, Page: p} }
func isUpper(c byte) bool   { return c >= 'A' && c <= 'Z' }
func isAlpha(c byte) bool   { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isDigit(c byte) bool   { return c >= '0' && c <= '9' }
func isCtl(c byte) bool     { return c < 0x20 || c == 0x7f }
func more(b []byte, from int) Verdict {
	if len(b)-from > MaxLine {
		return answer(PageURITooLarge)
	}
	return Verdict{Kind: More}
}

// requestLine is what judgeHTTP keeps of the request line.
type requestLine struct {
	method string
	path   []byte // the path of the URI, for the "/.." check
	major  int
	minor  int
	http09 bool
	end    int // index after the line's LF
}

// parseRequestLine parses the request line at b[start:]. A Verdict with Kind More or Answer ends the
// judgement early; rl then holds what was read before it (judgeHTTP needs the method).
func parseRequestLine(b []byte, start int) (rl requestLine, v Verdict, ok bool) {
	i, v, ok := parseMethod(b, start, &rl)
	if !ok {
		return rl, v, false
	}
	if i, v, ok = parseURI(b, start, i, &rl); !ok {
		return rl, v, false
	}
	if b[i] != ' ' { // CR or LF right after the URI: HTTP/0.9
		if b[i] == '\r' {
			if i+1 == len(b) {
				return rl, more(b, start), false
			}
			if b[i+1] != '\n' {
				return rl, bad(), false
			}
			i++
		}
		rl.http09, rl.end = true, i+1
		return rl, Verdict{}, true
	}
	if v, ok = parseVersion(b, start, i, &rl); !ok {
		return rl, v, false
	}
	return rl, Verdict{}, true
}

// parseMethod reads the method at b[start:] and the spaces after it, and returns the index of the
// URI's first byte.
func parseMethod(b []byte, start int, rl *requestLine) (int, Verdict, bool) {
	i := start
	for i < len(b) && (isUpper(b[i]) || b[i] == '_' || b[i] == '-') {
		i++
	}
	if i == len(b) {
		return i, more(b, start), false
	}
	if b[i] != ' ' || i == start {
		return i, bad(), false
	}
	rl.method = string(b[start:i])
	for i < len(b) && b[i] == ' ' {
		i++
	}
	if i == len(b) {
		return i, more(b, start), false
	}
	return i, Verdict{}, true
}

// parseURI reads the URI at b[i:] — a path, or scheme://host[:port][path] — into rl.path, and
// returns the index of the space, CR or LF that ends it.
func parseURI(b []byte, start, i int, rl *requestLine) (int, Verdict, bool) {
	if isAlpha(b[i]) {
		var v Verdict
		var ok bool
		if i, v, ok = parseSchemeHost(b, start, i, rl); !ok {
			return i, v, false
		}
	} else if b[i] != '/' {
		return i, bad(), false
	}
	ps := i
	for i < len(b) && b[i] != ' ' && b[i] != '\r' && b[i] != '\n' {
		if isCtl(b[i]) {
			return i, bad(), false
		}
		i++
	}
	if i == len(b) {
		return i, more(b, start), false
	}
	if rl.path == nil {
		rl.path = b[ps:i]
	}
	return i, Verdict{}, true
}

// parseSchemeHost reads the scheme://host[:port] of an absolute URI at b[i:] and returns the index
// after it: a '/' starting the path, or the space ending a URI without one (its path is "/").
func parseSchemeHost(b []byte, start, i int, rl *requestLine) (int, Verdict, bool) {
	for i < len(b) && (isAlpha(b[i]) || isDigit(b[i]) || b[i] == '+' || b[i] == '-' || b[i] == '.') {
		i++
	}
	i, v, ok := expect(b, start, i, "://")
	if !ok {
		return i, v, false
	}
	hs := i
	for i < len(b) && (isAlpha(b[i]) || isDigit(b[i]) || b[i] == '.' || b[i] == '-' || b[i] == '_') {
		i++
	}
	if i < len(b) && b[i] == ':' {
		i++
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i == len(b) {
		return i, more(b, start), false
	}
	if i == hs {
		return i, bad(), false
	}
	switch b[i] {
	case '/':
	case ' ':
		rl.path = []byte("/")
	default:
		return i, bad(), false
	}
	return i, Verdict{}, true
}

// parseVersion reads the spaces after the URI at b[i:], "HTTP/major.minor", trailing spaces and the
// line end, and sets rl's version and end.
func parseVersion(b []byte, start, i int, rl *requestLine) (Verdict, bool) {
	for i < len(b) && b[i] == ' ' {
		i++
	}
	i, v, ok := expect(b, start, i, "HTTP/")
	if !ok {
		return v, false
	}
	if rl.major, i, ok = digits(b, i); !ok {
		return more(b, start), false
	}
	if rl.major < 0 {
		return bad(), false
	}
	if rl.major > 1 {
		return answer(PageVersion), false
	}
	if i == len(b) {
		return more(b, start), false
	}
	if b[i] != '.' {
		return bad(), false
	}
	if rl.minor, i, ok = digits(b, i+1); !ok {
		return more(b, start), false
	}
	if rl.minor < 0 {
		return bad(), false
	}
	for i < len(b) && b[i] == ' ' {
		i++
	}
	if i == len(b) {
		return more(b, start), false
	}
	if b[i] == '\r' {
		i++
		if i == len(b) {
			return more(b, start), false
		}
	}
	if b[i] != '\n' {
		return bad(), false
	}
	rl.end = i + 1
	return Verdict{}, true
}

// expect reads the literal lit at b[i:] and returns the index after it; a different byte is a bad
// request, and b ending inside lit asks for more.
func expect(b []byte, start, i int, lit string) (int, Verdict, bool) {
	for _, want := range []byte(lit) {
		if i == len(b) {
			return i, more(b, start), false
		}
		if b[i] != want {
			return i, bad(), false
		}
		i++
	}
	return i, Verdict{}, true
}

// digits reads 1-3 decimal digits at b[i:] (nginx refuses versions above 999). n is -1 for no digit or
// too many; ok is false when b ends inside the number.
func digits(b []byte, i int) (n, next int, ok bool) {
	s := i
	for i < len(b) && isDigit(b[i]) {
		i++
	}
	if i == len(b) {
		return 0, i, false
	}
	if i == s || i-s > 3 {
		return -1, i, true
	}
	v, _ := strconv.Atoi(string(b[s:i]))
	return v, i, true
}

// pathEscapesRoot reports whether a path climbs above "/" (nginx: 400) or has a bad %-escape.
func pathEscapesRoot(p []byte) bool {
	if q := bytes.IndexByte(p, '?'); q >= 0 {
		p = p[:q]
	}
	var dec []byte
	for i := 0; i < len(p); i++ {
		if p[i] == '%' {
			if i+2 >= len(p) || unhex(p[i+1]) < 0 || unhex(p[i+2]) < 0 {
				return true
			}
			dec = append(dec, byte(unhex(p[i+1])<<4|unhex(p[i+2])))
			i += 2
			continue
		}
		dec = append(dec, p[i])
	}
	depth := 0
	for _, seg := range bytes.Split(dec, []byte("/"))[1:] {
		switch string(seg) {
		case "", ".":
		case "..":
			if depth--; depth < 0 {
				return true
			}
		default:
			depth++
		}
	}
	return false
}

func unhex(c byte) int {
	switch {
	case isDigit(c):
		return int(c - '0')
	case c|0x20 >= 'a' && c|0x20 <= 'f':
		return int(c|0x20-'a') + 10
	}
	return -1
}

// judgeHTTP is what nginx answers to the plain-HTTP request at the start of b (leading blank lines
// skipped): More while the request line or headers are incomplete, else the page it sends.
func judgeHTTP(b []byte) Verdict {
	i := 0
	for i < len(b) && (b[i] == '\r' || b[i] == '\n') {
		i++
	}
	rl, v, ok := parseRequestLine(b, i)
	if rl.end-i > MaxLine {
		v, ok = answer(PageURITooLarge), false
	}
	if !ok {
		v.Head = v.Kind == Answer && rl.method == "HEAD" // a HEAD's error page is its header alone
		return v
	}
	if rl.http09 {
		v := Verdict{Kind: Answer, HTTP09: true, Page: PagePlainHTTP}
		if rl.method != "GET" {
			v.Page = PageBadRequest
		}
		if pathEscapesRoot(rl.path) {
			v.Page = PageBadRequest
		}
		return v
	}
	if pathEscapesRoot(rl.path) {
		return bad()
	}
	head := rl.method == "HEAD"
	h, v, ok := parseHeaders(b, rl.end, head)
	if !ok {
		return v
	}
	switch {
	case h.hosts > 1, h.hosts == 1 && !validHost(h.host):
		return Verdict{Kind: Answer, Page: PageBadRequest, Head: head, Padding: h.padding}
	case h.hosts == 0 && rl.minor >= 1 && rl.major == 1:
		return Verdict{Kind: Answer, Page: PageBadRequest, Head: head, Padding: h.padding}
	case h.chunked && h.contentLength >= 0:
		return Verdict{Kind: Answer, Page: PageBadRequest, Head: head, Padding: h.padding}
	case rl.method == "TRACE":
		return Verdict{Kind: Answer, Page: PageNotAllowed, Padding: h.padding}
	}
	v = Verdict{Kind: Answer, Page: PagePlainHTTP, Head: head, Padding: h.padding}
	if h.contentLength > 0 {
		v.BodyPending = max(0, h.contentLength-int64(len(b)-h.end))
	}
	return v
}

// headers is what judgeHTTP keeps of the header lines.
type headers struct {
	padding       bool // the User-Agent gets msie_padding (paddedAgent)
	hosts         int  // Host lines seen
	host          []byte
	contentLength int64 // -1: none
	chunked       bool
	end           int // index after the blank line
}

// parseHeaders reads the header lines at b[i:] up to the blank line that ends them. An error found
// here is answered like the others, but nginx knows the method (head: HEAD) and the user agent (if
// its line came first) by now; ok is false with that answer, or with More.
func parseHeaders(b []byte, i int, head bool) (h headers, v Verdict, ok bool) {
	h.contentLength = -1
	headerErr := func(p Page) (headers, Verdict, bool) {
		return h, Verdict{Kind: Answer, Page: p, Head: head, Padding: h.padding}, false
	}
	for {
		le := bytes.IndexByte(b[i:], '\n')
		if le < 0 {
			if len(b)-i > MaxLine || len(b) > MaxHeader {
				return headerErr(PageHeaderTooLarge)
			}
			return h, Verdict{Kind: More}, false
		}
		line := b[i : i+le]
		i += le + 1
		if len(line) > MaxLine {
			return headerErr(PageHeaderTooLarge)
		}
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 {
			h.end = i
			return h, Verdict{}, true
		}
		if !h.field(line) {
			return headerErr(PageBadRequest)
		}
	}
}

// field takes in one header line (without its line end); false: nginx answers 400.
func (h *headers) field(line []byte) bool {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return false
	}
	name, value := line[:colon], bytes.Trim(line[colon+1:], " \t")
	for _, c := range name {
		if c <= 0x20 || c == 0x7f {
			return false
		}
	}
	if bytes.IndexByte(value, 0) >= 0 || bytes.IndexByte(line, '\r') >= 0 {
		return false
	}
	switch {
	case bytes.EqualFold(name, []byte("User-Agent")):
		h.padding = paddedAgent(value)
	case bytes.EqualFold(name, []byte("Host")):
		h.hosts++
		h.host = value
	case bytes.EqualFold(name, []byte("Content-Length")):
		if h.contentLength >= 0 {
			return false
		}
		n, err := strconv.ParseInt(string(value), 10, 64)
		if err != nil || n < 0 {
			return false
		}
		h.contentLength = n
	case bytes.EqualFold(name, []byte("Transfer-Encoding")):
		if !bytes.EqualFold(value, []byte("chunked")) {
			return false
		}
		h.chunked = true
	}
	return true
}

// paddedAgent is nginx's test for msie_padding: an MSIE user agent (not Opera), or a Chrome one that
// is not also Gecko (ngx_http_process_user_agent).
func paddedAgent(ua []byte) bool {
	if bytes.Contains(ua, []byte("Opera")) {
		return false
	}
	if i := bytes.Index(ua, []byte("MSIE ")); i >= 0 && i+7 < len(ua) {
		return true
	}
	return !bytes.Contains(ua, []byte("Gecko/")) && bytes.Contains(ua, []byte("Chrome/"))
}

// msiePadding is what nginx appends to error pages for those agents.
var msiePadding = strings.Repeat("<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n", 6)

// validHost is nginx's ngx_http_validate_host, in short.
func validHost(h []byte) bool {
	if len(h) == 0 || h[0] == '.' {
		return false
	}
	if bytes.Contains(h, []byte("..")) {
		return false
	}
	for _, c := range h {
		if c == '/' || c == '\\' || c == 0 {
			return false
		}
	}
	return true
}

var pages = map[Page]struct{ status, title, extra string }{
	PagePlainHTTP:      {"400 Bad Request", "400 The plain HTTP request was sent to HTTPS port", "<center>The plain HTTP request was sent to HTTPS port</center>\r\n"},
	PageBadRequest:     {"400 Bad Request", "400 Bad Request", ""},
	PageHeaderTooLarge: {"400 Bad Request", "400 Request Header Or Cookie Too Large", "<center>Request Header Or Cookie Too Large</center>\r\n"},
	PageNotAllowed:     {"405 Not Allowed", "405 Not Allowed", ""},
	PageURITooLarge:    {"414 Request-URI Too Large", "414 Request-URI Too Large", ""},
	PageVersion:        {"505 HTTP Version Not Supported", "505 HTTP Version Not Supported", ""},
}

// DefaultToken is the server token when the fallback site names none.
const DefaultToken = "nginx"

// Response renders v's page as nginx would send it, with token in the Server header and the page
// footer, and now as the Date. It returns nil for a Verdict that is not an Answer.
func Response(v Verdict, token string, now time.Time) []byte {
	if v.Kind == Alert {
		return []byte{0x15, byte(v.AlertVersion >> 8), byte(v.AlertVersion), 0, 2, 2, v.AlertDesc}
	}
	if v.Kind != Answer {
		return nil
	}
	if token == "" {
		token = DefaultToken
	}
	p := pages[v.Page]
	body := "<html>\r\n<head><title>" + p.title + "</title></head>\r\n<body>\r\n<center><h1>" + p.status +
		"</h1></center>\r\n" + p.extra + "<hr><center>" + token + "</center>\r\n</body>\r\n</html>\r\n"
	if v.HTTP09 {
		return []byte(body)
	}
	if v.Padding {
		body += msiePadding
	}
	head := "HTTP/1.1 " + p.status + "\r\nServer: " + token + "\r\nDate: " + now.UTC().Format(httpTime) +
		"\r\nContent-Type: text/html\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n"
	if v.Head {
		return []byte(head)
	}
	return []byte(head + body)
}

const httpTime = "Mon, 02 Jan 2006 15:04:05 GMT"

// Changed reports whether Judge(b) may differ from Judge(b[:from]) when the latter was More, so a
// caller reading a byte at a time need not judge again: within the header, a verdict only changes
// when a line ends or grows past a limit. Judge re-reads everything, so without this a client
// trickling a byte per packet would cost a parse of the whole header per byte.
func Changed(b []byte, from int) bool {
	if from <= 0 || b[0]&0x80 != 0 || bytes.IndexByte(b[from:], '\n') >= 0 {
		return true
	}
	i := 0
	for i < from && (b[i] == '\r' || b[i] == '\n') { // skipped before the request line, as nginx does
		i++
	}
	if bytes.IndexByte(b[i:from], '\n') < 0 {
		return true // still in the request line: any byte can decide it
	}
	last := bytes.LastIndexByte(b[:from], '\n')
	return len(b)-(last+1) > MaxLine || len(b) > MaxHeader
}
