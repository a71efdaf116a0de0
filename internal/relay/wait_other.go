//go:build !unix

package relay

import "syscall"

// waitReadable returns at once where peeking a socket is not wired up: the next Read then waits
// with its buffer, as it always did.
func waitReadable(syscall.RawConn) error { return nil }
