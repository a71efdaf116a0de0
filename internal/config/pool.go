package config

import "time"

// Defaults of the "fastrojan.pool" object (the client's spare connections; package pool explains
// the choice) and of fastrojan.spare_timeout.
const (
	DefaultPoolSpares   = 8
	DefaultPoolLinger   = 10 * time.Second
	DefaultPoolMaxAge   = 3 * time.Second
	DefaultSpareTimeout = 60 * time.Second
)

// Pool is the "fastrojan.pool" object: spare connections a client keeps to its server while
// applications are active, so a new stream skips the TCP and TLS round trip. Servers ignore it.
type Pool struct {
	// Spares is the most spares kept at once (the pool sizes itself to the burst below that);
	// 0 turns the pool off.
	Spares int `json:"spares"`
	// Linger is how long after the last stream spares are kept and replaced.
	Linger Duration `json:"linger"`
	// MaxAge retires an unused spare: below the shortest time the server keeps a silent connection.
	MaxAge Duration `json:"max_age"`
}

// DefaultPool returns the defaults of the "fastrojan.pool" object.
func DefaultPool() Pool {
	return Pool{Spares: DefaultPoolSpares, Linger: Duration(DefaultPoolLinger), MaxAge: Duration(DefaultPoolMaxAge)}
}

func (v *validator) pool(e *Ext) {
	const p = "$.fastrojan.pool"
	if e.Pool.Spares < 0 || e.Pool.Spares > 64 {
		v.add(p+".spares", "must be 0 (no spare connections) to 64, got %d", e.Pool.Spares)
	}
	if e.Pool.Linger <= 0 || e.Pool.Linger > Duration(10*time.Minute) {
		v.add(p+".linger", "must be a positive duration of at most \"10m\", got %s", e.Pool.Linger)
	}
	if e.Pool.MaxAge < Duration(500*time.Millisecond) || e.Pool.MaxAge > Duration(time.Hour) {
		v.add(p+".max_age", "must be between \"500ms\" and \"1h\" (and below the time the server keeps a silent connection: Xray 4s, fastrojan spare_timeout), got %s", e.Pool.MaxAge)
	}
	if e.SpareTimeout <= 0 {
		v.add("$.fastrojan.spare_timeout", "must be a positive duration such as \"60s\"; leave it out for the default")
	}
}
