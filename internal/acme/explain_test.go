package acme

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mholt/acmez/v3/acme"
)

func TestExplainRateLimit(t *testing.T) {
	m, err := New(Options{Domains: []string{"proxy.example.com"}, Storage: t.TempDir(), TLSAddr: ":443", TLSALPN: true})
	if err != nil {
		t.Fatal(err)
	}
	prob := acme.Problem{Type: acme.ProblemTypeRateLimited, Detail: "too many certificates (5) already issued for this exact set of identifiers in the last 168h0m0s, retry after 2026-12-03 00:00:00 UTC"}
	err = m.explain("obtain a certificate", fmt.Errorf("[proxy.example.com] Obtain: %w", prob))
	var ae *Error
	if e, ok := err.(*Error); ok {
		ae = e
	}
	if ae == nil || !strings.Contains(ae.Step, "rate limit") || !strings.Contains(ae.Fix, "wait until the limit resets") ||
		!strings.Contains(err.Error(), "retry after 2026-12-03") {
		t.Errorf("rate limit explained as %v", err)
	}
}
