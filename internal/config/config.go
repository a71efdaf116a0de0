// Package config reads trojan-gfw's config.json unchanged, plus one extension object ("fastrojan") for
// our own settings, so the same file stays valid for trojan-gfw.
//
// Decoding is strict: an unknown key, a duplicate key or a value of the wrong type is an error that names
// the file, the JSON path and what was expected. Missing keys take trojan-gfw's defaults
// (src/core/config.cpp).
package config

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"
)

// Run types.
const (
	RunServer  = "server"
	RunClient  = "client"
	RunForward = "forward"
	RunNAT     = "nat"
)

// Defaults of the "fastrojan" object.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultRequestTimeout   = 10 * time.Second
	DefaultIdleTimeout      = 5 * time.Minute
	DefaultMaxConns         = 4096
	DefaultFirstPayloadWait = 100 * time.Millisecond
	DefaultShutdownTimeout  = 10 * time.Second
	DefaultLogFormat        = "text"
)

// DefaultCipherTLS13 is trojan-gfw's shipped cipher_tls13, which is also the set Go offers.
const DefaultCipherTLS13 = "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384"

// Config is a trojan-gfw config.json plus our "fastrojan" object. The json tags are the file's keys; they
// drive both the strict decoder and json.Marshal (so a Config built in code can be written out for
// trojan-gfw).
type Config struct {
	RunType    string   `json:"run_type"` // "server" | "client" | "forward" | "nat"
	LocalAddr  string   `json:"local_addr"`
	LocalPort  int      `json:"local_port"`
	RemoteAddr string   `json:"remote_addr"` // client: the server; server: the fallback web site
	RemotePort int      `json:"remote_port"`
	TargetAddr string   `json:"target_addr"`
	TargetPort int      `json:"target_port"`
	Password   []string `json:"password"`
	UDPTimeout int      `json:"udp_timeout"` // seconds
	LogLevel   int      `json:"log_level"`   // trojan-gfw levels, see LevelFromTrojan
	SSL        SSL      `json:"ssl"`
	TCP        TCP      `json:"tcp"`
	MySQL      MySQL    `json:"mysql"`
	Fastrojan  Ext      `json:"fastrojan"` // our additions
	Mux        Mux      `json:"mux"`       // trojan-go's multiplexing, same keys as trojan-go (mux.go)

	// Path is the file the config was loaded from ("" if parsed from bytes).
	Path string `json:"-"`

	name string // file name used in error messages
}

// SSL is the "ssl" object.
type SSL struct {
	Verify             bool           `json:"verify"`
	VerifyHostname     bool           `json:"verify_hostname"`
	Cert               string         `json:"cert"` // server: certificate chain; client: certificate or CA to trust
	Key                string         `json:"key"`
	KeyPassword        string         `json:"key_password"`
	Cipher             string         `json:"cipher"`       // OpenSSL cipher list (TLS ≤ 1.2)
	CipherTLS13        string         `json:"cipher_tls13"` // not configurable in Go
	PreferServerCipher bool           `json:"prefer_server_cipher"`
	SNI                string         `json:"sni"`
	ALPN               []string       `json:"alpn"`
	ALPNPortOverride   map[string]int `json:"alpn_port_override"`
	ReuseSession       bool           `json:"reuse_session"`
	SessionTicket      bool           `json:"session_ticket"`
	SessionTimeout     int            `json:"session_timeout"` // seconds
	PlainHTTPResponse  string         `json:"plain_http_response"`
	Curves             string         `json:"curves"`
	DHParam            string         `json:"dhparam"`
}

// TCP is the "tcp" object.
type TCP struct {
	PreferIPv4   bool `json:"prefer_ipv4"`
	NoDelay      bool `json:"no_delay"`
	KeepAlive    bool `json:"keep_alive"`
	ReusePort    bool `json:"reuse_port"`
	FastOpen     bool `json:"fast_open"`
	FastOpenQLen int  `json:"fast_open_qlen"`
}

// MySQL is the "mysql" object (trojan-gfw's user database). trojan-gfw's newer "cafile" key is accepted
// as a synonym of "ca".
type MySQL struct {
	Enabled    bool   `json:"enabled"`
	ServerAddr string `json:"server_addr"`
	ServerPort int    `json:"server_port"`
	Database   string `json:"database"`
	Username   string `json:"username"`
	Password   string `json:"password"`
	Key        string `json:"key"`
	Cert       string `json:"cert"`
	CA         string `json:"ca"`
}

// Ext is the "fastrojan" object: our settings, all optional.
type Ext struct {
	HandshakeTimeout Duration `json:"handshake_timeout"`  // TLS handshake deadline (server and client)
	RequestTimeout   Duration `json:"request_timeout"`    // server: deadline for the first Trojan request after TLS
	IdleTimeout      Duration `json:"idle_timeout"`       // relay idle timeout
	MaxConns         int      `json:"max_conns"`          // server: max concurrent connections; 0 = default
	FirstPayloadWait Duration `json:"first_payload_wait"` // client: how long to wait for the app's first bytes
	ShutdownTimeout  Duration `json:"shutdown_timeout"`   // graceful drain bound on SIGTERM
	LogFormat        string   `json:"log_format"`         // "text" | "json"
	Farm             Farm     `json:"farm"`               // server: TFO cookie keys shared across a farm (farm.go)
	TFO              TFO      `json:"tfo"`                // TCP Fast Open per leg; default: tcp.fast_open (tfo.go)
	MetricsListen    string   `json:"metrics_listen"`     // Prometheus /metrics on this host:port; empty: off
	Pprof            bool     `json:"pprof"`              // also Go's /debug/pprof/ on metrics_listen (docs/performance.md)
	Users            Users    `json:"users"`              // server: user database, quotas, accounting (users.go)
	TLSSite          string   `json:"tls_site"`           // server: HTTPS server that gets non-TLS input raw (probe.go)
	MaxConnsPerIP    int      `json:"max_conns_per_ip"`   // server: connections at once from one client address; 0 = default
	ACME             ACME     `json:"acme"`               // server: certificate by ACME instead of ssl.cert/ssl.key (acme.go)
	Pool             Pool     `json:"pool"`               // client: spare connections to the server (pool.go)
	SpareTimeout     Duration `json:"spare_timeout"`      // server: how long a connection may stay silent after TLS (pool.go)
}

// DefaultExt returns the defaults of the "fastrojan" object.
func DefaultExt() Ext {
	return Ext{
		HandshakeTimeout: Duration(DefaultHandshakeTimeout),
		RequestTimeout:   Duration(DefaultRequestTimeout),
		IdleTimeout:      Duration(DefaultIdleTimeout),
		MaxConns:         DefaultMaxConns,
		FirstPayloadWait: Duration(DefaultFirstPayloadWait),
		ShutdownTimeout:  Duration(DefaultShutdownTimeout),
		LogFormat:        DefaultLogFormat,
		Farm:             DefaultFarm(),
		Users:            DefaultUsers(),
		ACME:             DefaultACME(),
		Pool:             DefaultPool(),
		SpareTimeout:     Duration(DefaultSpareTimeout),
	}
}

// Default returns a config holding only defaults: trojan-gfw's for every trojan-gfw key (addresses empty,
// ports 0, no password) and ours for the "fastrojan" object. It does not validate; callers building a
// config in code fill in addresses, ports, passwords and certificates.
func Default(runType string) *Config {
	return &Config{
		RunType:    runType,
		UDPTimeout: 60,
		LogLevel:   1,
		Password:   []string{},
		SSL: SSL{
			Verify:             true,
			VerifyHostname:     true,
			PreferServerCipher: true,
			ALPN:               []string{},
			ALPNPortOverride:   map[string]int{},
			ReuseSession:       true,
			SessionTicket:      false,
			SessionTimeout:     600,
		},
		TCP: TCP{
			NoDelay:      true,
			KeepAlive:    true,
			FastOpenQLen: 20,
		},
		MySQL: MySQL{
			ServerAddr: "127.0.0.1",
			ServerPort: 3306,
			Database:   "trojan",
			Username:   "trojan",
		},
		Fastrojan: DefaultExt(),
		Mux:       DefaultMux(),
	}
}

// Load reads the file at path, decodes it strictly and validates it.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(data, path)
	if c != nil {
		c.Path = path
	}
	return c, err
}

// Parse decodes data strictly (name is used in error messages), fills in defaults and validates.
// On a validation error it returns the decoded config together with the error.
func Parse(data []byte, name string) (*Config, error) {
	c, err := Decode(data, name)
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}

// Decode decodes data strictly and fills in defaults, without Validate. It is what Parse does first;
// `doctor` and tests use it to read configs whose files do not exist on this machine.
func Decode(data []byte, name string) (*Config, error) {
	c := Default(RunClient) // trojan-gfw's default run_type
	c.name = name
	if err := decodeInto(data, name, c); err != nil {
		return nil, err
	}
	if c.Fastrojan.MaxConns == 0 {
		c.Fastrojan.MaxConns = DefaultMaxConns
	}
	return c, nil
}

// LocalHostPort is local_addr:local_port, bracketing IPv6 addresses.
func (c *Config) LocalHostPort() string { return hostPort(c.LocalAddr, c.LocalPort) }

// RemoteHostPort is remote_addr:remote_port (client: the server; server: the fallback).
func (c *Config) RemoteHostPort() string { return hostPort(c.RemoteAddr, c.RemotePort) }

// TargetHostPort is target_addr:target_port (forward mode).
func (c *Config) TargetHostPort() string { return hostPort(c.TargetAddr, c.TargetPort) }

func hostPort(addr string, port int) string { return net.JoinHostPort(addr, strconv.Itoa(port)) }

// Log levels beyond slog's own, for trojan-gfw's FATAL and OFF.
const (
	LevelFatal = slog.LevelError + 4
	LevelOff   = slog.Level(1 << 30)
)

// LevelFromTrojan maps trojan-gfw's log_level (0 ALL, 1 INFO, 2 WARN, 3 ERROR, 4 FATAL, 5 OFF) to a
// slog level: log records at or above the returned level. Values below 0 mean ALL, above 5 mean OFF.
func LevelFromTrojan(level int) slog.Level {
	switch {
	case level <= 0:
		return slog.LevelDebug
	case level == 1:
		return slog.LevelInfo
	case level == 2:
		return slog.LevelWarn
	case level == 3:
		return slog.LevelError
	case level == 4:
		return LevelFatal
	default:
		return LevelOff
	}
}

// Redacted returns a copy with every password and key password replaced, for logging or printing.
func (c *Config) Redacted() *Config {
	r := *c
	r.Password = make([]string, len(c.Password))
	for i := range r.Password {
		r.Password[i] = "REDACTED"
	}
	if r.SSL.KeyPassword != "" {
		r.SSL.KeyPassword = "REDACTED"
	}
	if r.MySQL.Password != "" {
		r.MySQL.Password = "REDACTED"
	}
	if r.Fastrojan.Farm.Secret != "" {
		r.Fastrojan.Farm.Secret = "REDACTED"
	}
	r.SSL.ALPN = append([]string(nil), c.SSL.ALPN...)
	r.SSL.ALPNPortOverride = make(map[string]int, len(c.SSL.ALPNPortOverride))
	for k, v := range c.SSL.ALPNPortOverride {
		r.SSL.ALPNPortOverride[k] = v
	}
	return &r
}

// Error is a config problem at one JSON path.
type Error struct {
	File   string // file name ("" if unknown)
	Line   int    // 1-based; 0 if not known (only syntax errors carry a position)
	Column int
	Path   string // JSON path such as "$.ssl.cert"; "" for syntax errors
	Msg    string
	Err    error // underlying cause, if any
}

func (e *Error) Error() string {
	s := ""
	if e.File != "" {
		s = e.File
	}
	if e.Line > 0 {
		s += ":" + strconv.Itoa(e.Line) + ":" + strconv.Itoa(e.Column)
	}
	if s != "" {
		s += ": "
	}
	if e.Path != "" {
		s += e.Path + ": "
	}
	return s + e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// SplitHostPort splits "host:port" into the host and a port number in 0..65535.
func SplitHostPort(s string) (string, int, error) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return h, port, nil
}
