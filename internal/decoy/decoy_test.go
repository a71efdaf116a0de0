package decoy

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// Each case is what nginx 1.22.1 did with these bytes on its "listen ssl" port (observed with the
// probes package; the server tests compare against a live nginx).
func TestJudgeAsNginx(t *testing.T) {
	type want struct {
		kind    Kind
		page    Page
		http09  bool
		head    bool
		pending int64
	}
	answer := func(p Page) want { return want{kind: Answer, page: p} }
	cases := []struct {
		in string
		want
	}{
		{"", want{kind: More}},
		{"G", want{kind: More}},
		{"GET", want{kind: More}},
		{"GET ", want{kind: More}},
		{"\r\n", want{kind: More}},
		{"\r\nG", want{kind: More}},
		{"GET / HTT", want{kind: More}},
		{"GET / HTTP/1.1\r\nHost: local", want{kind: More}},
		{"\xff", want{kind: More}},
		{"\xff\x00\x00\x00", want{kind: More}},
		{"\xff\x00\x00\x00\x00", want{kind: Close}},
		{"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10", want{kind: More}},
		{"\x80\x03\x01\x03\x01", want{kind: Alert}},
		{"\x81\x06\x02\x02\x03", want{kind: Close}},
		{"\xff\xfb\x01\xff", want{kind: More}},
		{"\xff\xfb\x01\xff\xfb\x03", want{kind: Alert}},
		{"GET / HTTP/1.0\r\n\r\n", answer(PagePlainHTTP)},
		{"GET / HTTP/1.1\nHost: a\n\n", answer(PagePlainHTTP)},
		{"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", answer(PagePlainHTTP)},
		{"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n", answer(PagePlainHTTP)},
		{"GET / HTTP/1.2\r\nHost: a\r\n\r\n", answer(PagePlainHTTP)},
		{"GET / HTTP/1.1\r\nHost: a\r\nX_Y: z\r\n\r\n", answer(PagePlainHTTP)},
		{"HEAD / HTTP/1.0\r\n\r\n", want{kind: Answer, page: PagePlainHTTP, head: true}},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nab", want{kind: Answer, page: PagePlainHTTP, pending: 98}},
		{"GET /\r\n", want{kind: Answer, page: PagePlainHTTP, http09: true}},
		{"HEAD /\r\n", want{kind: Answer, page: PageBadRequest, http09: true}},
		{"GET / HTTP/1.1\r\n\r\n", answer(PageBadRequest)},
		{"GET / HTTP/1.1\r\nHost localhost\r\n\r\n", answer(PageBadRequest)},
		{"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", answer(PageBadRequest)},
		{"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", answer(PageBadRequest)},
		{"GET /../ HTTP/1.1\r\nHost: a\r\n\r\n", answer(PageBadRequest)},
		{"GET a HTTP/1.1\r\n\r\n", answer(PageBadRequest)},
		{"GET / HTXP/1.1\r\n\r\n", answer(PageBadRequest)},
		{"get / HTTP/1.1\r\n\r\n", answer(PageBadRequest)},
		{"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", answer(PageBadRequest)},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", answer(PageBadRequest)},
		{"CONNECT example.com:443 HTTP/1.1\r\n\r\n", answer(PageBadRequest)},
		{"SSH-2.0-OpenSSH_9.2p1\r\n", answer(PageBadRequest)},
		{"\x00", answer(PageBadRequest)},
		{"\x05\x01\x00", answer(PageBadRequest)},
		{" ", answer(PageBadRequest)},
		{"\t", answer(PageBadRequest)},
		{"\x7f", answer(PageBadRequest)},
		{"GET / HTTP/2.0\r\nHost: a\r\n\r\n", answer(PageVersion)},
		{"GET /" + strings.Repeat("a", 9000) + " HTTP/1.1\r\n\r\n", answer(PageURITooLarge)},
		{"GET /" + strings.Repeat("a", 9000), answer(PageURITooLarge)},
		{"GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("b", 9000) + "\r\n\r\n", answer(PageHeaderTooLarge)},
		{"TRACE / HTTP/1.1\r\nHost: a\r\n\r\n", answer(PageNotAllowed)},
	}
	for _, tc := range cases {
		v := Judge([]byte(tc.in))
		got := want{kind: v.Kind, page: v.Page, http09: v.HTTP09, head: v.Head, pending: v.BodyPending}
		if got != tc.want {
			t.Errorf("Judge(%.40q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// TestSSLv2Alerts: what OpenSSL 3 (nginx 1.22) answered to SSLv2-style ClientHellos.
func TestSSLv2Alerts(t *testing.T) {
	chal := "0123456789abcdef"
	for _, tc := range []struct{ in, want string }{
		{"\x80\x03\x01\x03\x01", "\x15\x03\x03\x00\x02\x02\x32"},
		{"\x80\x06\x01\x02\x00ABC", "\x15\x03\x03\x00\x02\x02\x32"},
		{"\xff\xfb\x01\xff\xfb\x03", "\x15\x03\x03\x00\x02\x02\x16"},
		{"\x80\x1c\x01\x03\x01\x00\x03\x00\x00\x00\x10\x00\x00\x2f" + chal, "\x15\x03\x01\x00\x02\x02\x28"},
		{"\x80\x1c\x01\x03\x03\x00\x03\x00\x00\x00\x10\x00\x00\x9c" + chal, "\x15\x03\x03\x00\x02\x02\x28"},
		{"\x80\x1c\x01\x00\x02\x00\x03\x00\x00\x00\x10\x01\x00\x80" + chal, "\x15\x03\x03\x00\x02\x02\x46"},
	} {
		if got := Response(Judge([]byte(tc.in)), "", time.Now()); string(got) != tc.want {
			t.Errorf("%q: answer %q, want %q", tc.in, got, tc.want)
		}
	}
	// 16704 is the longest record OpenSSL buffers; one more byte is record_overflow at once.
	if v := Judge([]byte("\xc1\x40\x01\x03\x01")); v.Kind != More {
		t.Errorf("16704-byte record: %+v, want More", v)
	}
	if v := Judge([]byte("\xc1\x41\x01\x03\x01")); v.Kind != Alert || v.AlertDesc != alertRecordOverflow {
		t.Errorf("16705-byte record: %+v, want record_overflow", v)
	}
}

// TestMSIEPadding: nginx pads error pages for MSIE and Chrome user agents, not for Firefox or Opera.
func TestMSIEPadding(t *testing.T) {
	for ua, want := range map[string]bool{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36": true,
		"Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)":                                                              true,
		"Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0":                                          false,
		"Opera/9.80 (Windows NT 6.1; U; MSIE 9.0) Presto/2.12.388 Version/12.16":                                          false,
		"curl/8.5.0": false,
	} {
		v := Judge([]byte("GET / HTTP/1.1\r\nUser-Agent: " + ua + "\r\nHost: a\r\n\r\n"))
		if v.Padding != want {
			t.Errorf("%s: padding %v, want %v", ua, v.Padding, want)
		}
	}
	v := Judge([]byte("GET / HTTP/1.1\r\nUser-Agent: x Chrome/1\r\nHost: a\r\n\r\n"))
	if r := Response(v, "nginx", time.Now()); !bytes.Contains(r, []byte("Content-Length: 650\r\n")) || !bytes.HasSuffix(r, []byte("friendly error page -->\r\n")) {
		t.Errorf("padded answer %q", r)
	}
}

// TestResponseAsNginx: the bytes of nginx 1.22.1's plain-HTTP page, as captured from it.
func TestResponseAsNginx(t *testing.T) {
	now := time.Date(2026, 12, 2, 5, 16, 30, 0, time.UTC)
	want := "HTTP/1.1 400 Bad Request\r\nServer: nginx/1.22.1\r\nDate: Wed, 02 Dec 2026 05:16:30 GMT\r\n" +
		"Content-Type: text/html\r\nContent-Length: 255\r\nConnection: close\r\n\r\n" +
		"<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n<body>\r\n" +
		"<center><h1>400 Bad Request</h1></center>\r\n<center>The plain HTTP request was sent to HTTPS port</center>\r\n" +
		"<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n"
	if got := Response(Verdict{Kind: Answer, Page: PagePlainHTTP}, "nginx/1.22.1", now); string(got) != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
	head := Response(Verdict{Kind: Answer, Page: PagePlainHTTP, Head: true}, "nginx/1.22.1", now)
	if !strings.HasSuffix(want, "") || !bytes.HasPrefix([]byte(want), head) || !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		t.Fatalf("HEAD answer %q", head)
	}
	if Response(Verdict{Kind: More}, "x", now) != nil || Response(Verdict{Kind: Close}, "x", now) != nil {
		t.Fatal("a page for a verdict that is not an answer")
	}
}

// FuzzJudge: any bytes get a decision without panicking; an answer renders; once decided, more
// bytes do not turn a decision back into waiting.
func FuzzJudge(f *testing.F) {
	for _, s := range []string{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "\xff\x00\x00\x00\x00", "GET /\r\n", "POST / HTTP/1.0\r\nContent-Length: 5\r\n\r\nab", "\r\n\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 0 && b[0] == 0x16 {
			return
		}
		v := Judge(b)
		if v.Kind == Answer && len(Response(v, "", time.Now())) == 0 {
			t.Fatalf("empty answer for %q", b)
		}
		if v.BodyPending < 0 {
			t.Fatalf("negative pending body for %q", b)
		}
		if v.Kind != More {
			if w := Judge(append(bytes.Clone(b), "x\r\n\r\n"...)); w.Kind == More {
				t.Fatalf("%q decided %+v, but with more bytes waits", b, v)
			}
		}
	})
}

// FuzzChanged: when Changed says a judgement is not needed, Judge would indeed still say More.
func FuzzChanged(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nX: y"), 20)
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\x00X: y"), 28)
	f.Add([]byte("\xff\x00\x00\x00\x00"), 2)
	f.Fuzz(func(t *testing.T, b []byte, from int) {
		if len(b) == 0 || b[0] == 0x16 || from <= 0 || from > len(b) {
			return
		}
		if Judge(b[:from]).Kind != More || Changed(b, from) {
			return
		}
		if v := Judge(b); v.Kind != More {
			t.Fatalf("Changed(%q, %d) = false, but Judge decides %+v", b, from, v)
		}
	})
}

func TestChangedSkipsHeaderBytes(t *testing.T) {
	b := []byte("GET / HTTP/1.1\r\nHost: a\r\nX-Long: " + strings.Repeat("y", 100))
	if Changed(b, len(b)-1) {
		t.Error("a byte in the middle of a header line needs no new judgement")
	}
	if !Changed(append(b, '\n'), len(b)) {
		t.Error("a line end needs a judgement")
	}
	if !Changed([]byte("GET /x"), 5) {
		t.Error("a byte of the request line needs a judgement")
	}
}
