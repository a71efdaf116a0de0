package users

import (
	"strings"
	"testing"

	"github.com/fastrojan/fastrojan/internal/trojan"
)

func TestStaticLookup(t *testing.T) {
	s := NewStatic([]string{"alpha", "beta", "alpha", ""})
	if got := s.Len(); got != 3 {
		t.Fatalf("Len = %d, want 3 (duplicates collapse)", got)
	}
	for _, tc := range []struct {
		pw, name string
	}{{"alpha", "password #1"}, {"beta", "password #2"}, {"", "password #4"}} {
		u, ok := s.Lookup(trojan.HashPassword(tc.pw))
		if !ok {
			t.Fatalf("password %q not found", tc.pw)
		}
		if u.Name != tc.name || u.Hash != trojan.HashPassword(tc.pw) {
			t.Errorf("password %q: got %q, want name %q", tc.pw, u.Name, tc.name)
		}
		if strings.Contains(u.Name, tc.pw) && tc.pw != "" {
			t.Errorf("name %q contains the password", u.Name)
		}
	}
	if _, ok := s.Lookup(trojan.HashPassword("gamma")); ok {
		t.Error("unknown password found")
	}
	if _, ok := s.Lookup(trojan.Hash{}); ok {
		t.Error("zero hash found")
	}
}

func TestStaticEmpty(t *testing.T) {
	s := NewStatic(nil)
	if _, ok := s.Lookup(trojan.HashPassword("x")); ok {
		t.Error("empty store found a user")
	}
}
