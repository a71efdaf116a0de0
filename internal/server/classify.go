package server

import (
	"errors"

	"github.com/fastrojan/fastrojan/internal/trojan"
	"github.com/fastrojan/fastrojan/internal/users"
)

type verdictKind int

const (
	verdictMore     verdictKind = iota // a proper prefix of a request for a known user so far
	verdictConnect                     // a complete header with a known hash (any command)
	verdictFallback                    // can never be a valid request for a known user
)

type verdict struct {
	kind   verdictKind
	req    trojan.Request
	user   users.User
	hdrLen int    // verdictConnect: header length; the payload follows
	reason string // verdictFallback: why, for the log (never any bytes of b)
}

// classify decides what the bytes read so far from a client are. It is called again with more bytes
// after each read, so a header split across TLS records still authenticates, and it judges as early
// as the bytes allow: the hash is looked up as soon as its 56 bytes are there.
func classify(b []byte, store users.Store) verdict {
	var u users.User
	if len(b) >= trojan.HashLen && trojan.HashPrefixValid(b[:trojan.HashLen]) {
		var ok bool
		if u, ok = store.Lookup(trojan.Hash(b[:trojan.HashLen])); !ok {
			return verdict{kind: verdictFallback, reason: "unknown password"}
		}
	}
	req, n, err := trojan.ParseRequest(b)
	switch {
	case err == nil:
		return verdict{kind: verdictConnect, req: req, user: u, hdrLen: n}
	case errors.Is(err, trojan.ErrShort):
		return verdict{kind: verdictMore}
	default:
		return verdict{kind: verdictFallback, reason: "malformed request"}
	}
}
