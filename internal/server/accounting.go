package server

import (
	"net"
	"sync/atomic"

	"github.com/fastrojan/fastrojan/internal/users"
)

// beginSession registers an authenticated connection with a user store that counts bytes and
// withdraws access (users.Accountant): when the user is deleted or goes over quota, the store closes c,
// which ends the relay within moments. ok is false when the user lost access since the lookup; the
// connection is then treated like one with an unknown password. For other stores it returns a nil
// session, whose counters are nil.
func (s *Server) beginSession(c net.Conn, u users.User) (sess *users.Session, ok bool) {
	acct, isAcct := s.opts.Users.(users.Accountant)
	if !isAcct {
		return nil, true
	}
	return acct.Begin(u, func() { _ = c.Close() })
}

// addCount adds n to a session counter, which may be nil (a user that is not counted).
func addCount(c *atomic.Int64, n int) {
	if c != nil && n > 0 {
		c.Add(int64(n))
	}
}
