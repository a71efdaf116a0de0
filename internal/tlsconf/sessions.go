package tlsconf

import (
	"crypto/rand"
	"crypto/tls"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Server-side session cache: ssl.reuse_session without ssl.session_ticket (trojan-gfw's default).
// trojan-gfw then sets SSL_OP_NO_TICKET with OpenSSL's session cache on, and OpenSSL resumes TLS 1.3
// through stateful tickets: the client gets a random session ID and the session stays on the server.
// Go has no such cache, so it is built here from crypto/tls's WrapSession/UnwrapSession hooks: the
// ticket is 32 random bytes, the session state stays in a bounded LRU (hashicorp/golang-lru, no
// goroutine of its own) until ssl.session_timeout. A resumed TLS 1.3 handshake still runs a fresh key
// exchange (psk_dhe_ke: forward secrecy kept); it skips the certificate, its signature and its
// verification, and the resumed server flight is a few hundred bytes shorter.

// sessionIDLen is the length of a stateful ticket (OpenSSL's session IDs are 32 bytes too).
const sessionIDLen = 32

// sessionCacheSize bounds the cache: OpenSSL's default (SSL_SESSION_CACHE_MAX_SIZE_DEFAULT). A server
// session is about 200 bytes here.
const sessionCacheSize = 20 << 10

// maxSessionLifetime is the ticket lifetime without ssl.session_timeout: Go's own limit (7 days).
const maxSessionLifetime = 7 * 24 * time.Hour

type cachedSession struct {
	state   []byte // tls.SessionState.Bytes
	expires time.Time
}

// sessionCache keeps resumable sessions on the server for ttl, at most size of them (the least
// recently used go first).
type sessionCache struct {
	cache *lru.Cache[string, cachedSession]
	ttl   time.Duration
	now   func() time.Time
}

func newSessionCache(size int, ttl time.Duration) *sessionCache {
	c, err := lru.New[string, cachedSession](size)
	if err != nil { // only for size <= 0
		panic(err)
	}
	return &sessionCache{cache: c, ttl: ttl, now: time.Now}
}

// install makes cfg issue stateful tickets from c.
func (c *sessionCache) install(cfg *tls.Config) {
	cfg.SessionTicketsDisabled = false
	cfg.WrapSession = c.wrap
	cfg.UnwrapSession = c.unwrap
}

func (c *sessionCache) wrap(_ tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	state, err := ss.Bytes()
	if err != nil {
		return nil, err
	}
	id := make([]byte, sessionIDLen)
	_, _ = rand.Read(id) // crypto/rand.Read never fails (Go ≥ 1.24)
	c.cache.Add(string(id), cachedSession{state: state, expires: c.now().Add(c.ttl)})
	return id, nil
}

// unwrap returns the session a client's ticket names; nil (a full handshake) for an unknown,
// evicted or expired one. A session may be resumed more than once within its lifetime, as Go's own
// tickets may: without 0-RTT data a second use replays nothing, and a client opening several
// connections at once (spares) resumes them all.
func (c *sessionCache) unwrap(identity []byte, _ tls.ConnectionState) (*tls.SessionState, error) {
	if len(identity) != sessionIDLen {
		return nil, nil
	}
	s, ok := c.cache.Get(string(identity))
	if !ok {
		return nil, nil
	}
	if !c.now().Before(s.expires) {
		c.cache.Remove(string(identity))
		return nil, nil
	}
	ss, err := tls.ParseSessionState(s.state)
	if err != nil {
		return nil, nil
	}
	return ss, nil
}
