package acme

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzRedirect: the port-80 server answers any request that is not a challenge with a redirect to
// https on one of its own names (never a name the client made up), whatever Host, path and query a
// client sends.
func FuzzRedirect(f *testing.F) {
	m, err := New(Options{Domains: []string{"proxy.example.com"}, Storage: f.TempDir(), TLSAddr: "127.0.0.1:8443", TLSALPN: true})
	if err != nil {
		f.Fatal(err)
	}
	if err := m.Start(f.Context()); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { m.Close() })
	f.Add("proxy.example.com", "/index.html", "q=1")
	f.Add("", "/.well-known/acme-challenge/token", "")
	f.Add("[::1]:80", "/a b", "x=%zz")
	f.Fuzz(func(t *testing.T, host, path, query string) {
		r := &http.Request{Method: "GET", Host: host, URL: &url.URL{Path: path, RawQuery: query}, Header: http.Header{}}
		w := httptest.NewRecorder()
		m.serveHTTP(w, r)
		if w.Code != http.StatusMovedPermanently {
			if strings.HasPrefix(path, "/.well-known/acme-challenge/") {
				return // not a challenge we know: certmagic answers it
			}
			t.Fatalf("Host %q path %q: status %d, want 301", host, path, w.Code)
		}
		loc := w.Header().Get("Location")
		u, err := url.Parse(loc)
		if err != nil || u.Scheme != "https" || u.Host != "proxy.example.com:8443" || strings.ContainsAny(loc, "\r\n") {
			t.Fatalf("Host %q path %q query %q: Location %q (%v)", host, path, query, loc, err)
		}
	})
}
