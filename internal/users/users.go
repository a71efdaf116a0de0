// Package users answers "which user sends this password hash?" for the server. This first version
// holds the passwords of a config file in memory; stores backed by a database come later and sit
// behind the same Store interface.
package users

import (
	"fmt"

	"github.com/fastrojan/fastrojan/internal/trojan"
)

// User is one account the server accepts.
type User struct {
	Hash trojan.Hash
	// Name labels the user in logs and metrics, such as "password #1". It is never the password.
	Name string
}

// Store looks users up by the hash a client sent. Lookup must answer from memory and never block on
// I/O: it runs while a possible prober waits, and its latency must not tell a valid hash from another.
type Store interface {
	Lookup(h trojan.Hash) (User, bool)
}

// Static is a fixed set of users built from plain passwords. It is safe for concurrent use.
type Static struct {
	byHash map[trojan.Hash]User
}

var _ Store = (*Static)(nil)

// NewStatic returns a Static holding one user per password, named "password #1", "password #2", ... in
// the order given. A password listed twice keeps the first name.
func NewStatic(passwords []string) *Static {
	s := &Static{byHash: make(map[trojan.Hash]User, len(passwords))}
	for i, pw := range passwords {
		h := trojan.HashPassword(pw)
		if _, dup := s.byHash[h]; dup {
			continue
		}
		s.byHash[h] = User{Hash: h, Name: fmt.Sprintf("password #%d", i+1)}
	}
	return s
}

// Lookup returns the user whose password hashes to h.
func (s *Static) Lookup(h trojan.Hash) (User, bool) {
	u, ok := s.byHash[h]
	return u, ok
}

// Len is the number of distinct users.
func (s *Static) Len() int { return len(s.byHash) }
