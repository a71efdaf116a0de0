package config

// Mux is trojan-go's top-level "mux" object, with its keys and defaults: the client carries its
// TCP streams as streams of a few multiplexed connections (CMD 0x7f, smux, SimpleSocks). The server
// always accepts mux sessions from known users, as trojan-go's does, whatever this says.
type Mux struct {
	Enabled     bool `json:"enabled"`      // client: multiplex (default false)
	Concurrency int  `json:"concurrency"`  // client: streams per connection before another is opened (default 8)
	IdleTimeout int  `json:"idle_timeout"` // client: seconds a connection without streams is kept (default 60)
}

// DefaultMux returns trojan-go's defaults of the "mux" object.
func DefaultMux() Mux { return Mux{Concurrency: 8, IdleTimeout: 60} }

func (v *validator) mux(m *Mux) {
	if m.Concurrency < 1 || m.Concurrency > 1024 {
		v.add("$.mux.concurrency", "must be 1..1024 streams per connection, got %d", m.Concurrency)
	}
	if m.IdleTimeout < 1 {
		v.add("$.mux.idle_timeout", "must be at least 1 (seconds), got %d", m.IdleTimeout)
	}
}
