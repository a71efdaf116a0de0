// Package users answers "which user sends this password hash?" for the server, and counts what each
// user moves. Static holds the passwords of a config file; Ledger adds users from a database (trojan-gfw's
// `users` table, through a Backend such as internal/users/userdb), enforces their quotas and writes
// their byte counts back in idempotent batches that survive outages and restarts.
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

	acct *account // set for database users (Ledger); nil for config passwords
}

// Store looks users up by the hash a client sent. Lookup must answer from memory and never block on
// I/O: it runs while a possible prober waits, and its latency must not tell a valid hash from another.
type Store interface {
	Lookup(h trojan.Hash) (User, bool)
}

// Accountant is a Store that also counts bytes per user and ends the connections of a user who loses
// access (deleted, or over quota). The server calls Begin for each authenticated connection.
type Accountant interface {
	Store
	// Begin registers one connection of u. cut is called at most once, from another goroutine, when u
	// loses access while the connection is open; it must make the connection end (close it). ok is
	// false when u has lost access since Lookup; the caller then treats u as unknown.
	Begin(u User, cut func()) (s *Session, ok bool)
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
