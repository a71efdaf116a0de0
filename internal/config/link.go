package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// TrojanLink is the trojan:// URL that clients such as trojan-go, Xray, sing-box and v2rayN import:
// trojan://PASSWORD@HOST:PORT?sni=NAME&allowInsecure=1#LABEL
type TrojanLink struct {
	Password      string
	Host          string
	Port          int
	SNI           string
	AllowInsecure bool
	ALPN          []string
	Name          string
}

func (l TrojanLink) String() string {
	q := url.Values{}
	if l.SNI != "" {
		q.Set("sni", l.SNI)
	}
	if l.AllowInsecure {
		q.Set("allowInsecure", "1")
	}
	if len(l.ALPN) > 0 {
		q.Set("alpn", strings.Join(l.ALPN, ","))
	}
	u := url.URL{
		Scheme:   "trojan",
		User:     url.User(l.Password),
		Host:     l.Addr(),
		RawQuery: q.Encode(),
		Fragment: l.Name,
	}
	return u.String()
}

// ParseTrojanLink reads a trojan:// URL. Parameters other clients add for transports we do not
// speak (type=ws, security=reality, ...) are errors, not silently ignored: the connection would fail.
func ParseTrojanLink(s string) (TrojanLink, error) {
	var l TrojanLink
	u, err := url.Parse(s)
	if err != nil {
		return l, fmt.Errorf("trojan link: %w", err)
	}
	if u.Scheme != "trojan" {
		return l, fmt.Errorf("trojan link: scheme %q, want trojan://PASSWORD@HOST:PORT", u.Scheme)
	}
	if u.User == nil || u.User.Username() == "" {
		return l, errors.New("trojan link: no password (want trojan://PASSWORD@HOST:PORT)")
	}
	l.Password = u.User.Username()
	if pw, ok := u.User.Password(); ok { // a password containing ':' unescaped
		l.Password += ":" + pw
	}
	l.Host = u.Hostname()
	if l.Host == "" {
		return l, errors.New("trojan link: no host")
	}
	if strings.Contains(l.Host, ":") && net.ParseIP(l.Host) == nil { // "trojan://pw@::" has host ":"
		return l, fmt.Errorf("trojan link: bad host %q (an IPv6 address goes in brackets: [2001:db8::1]:443)", l.Host)
	}
	l.Port = 443
	if p := u.Port(); p != "" {
		if l.Port, err = strconv.Atoi(p); err != nil || l.Port < 1 || l.Port > 65535 {
			return l, fmt.Errorf("trojan link: bad port %q", p)
		}
	}
	q := u.Query()
	for key, vals := range q {
		v := vals[0]
		switch key {
		case "sni", "peer":
			l.SNI = v
		case "allowInsecure", "allow_insecure", "insecure":
			l.AllowInsecure = v == "1" || v == "true"
		case "alpn":
			l.ALPN = strings.Split(v, ",")
		case "type":
			if v != "tcp" && v != "" {
				return l, fmt.Errorf("trojan link: transport type=%s is not supported (only tcp)", v)
			}
		case "security":
			if v != "tls" && v != "" {
				return l, fmt.Errorf("trojan link: security=%s is not supported (only tls)", v)
			}
		case "headerType", "fp":
			// Presentation details of other clients; no effect on the Trojan protocol here.
		default:
			return l, fmt.Errorf("trojan link: unknown parameter %q", key)
		}
	}
	l.Name = u.Fragment
	return l, nil
}

// Addr is the server's host:port.
func (l TrojanLink) Addr() string { return net.JoinHostPort(l.Host, strconv.Itoa(l.Port)) }

// ApplySSL sets the TLS settings the link carries (sni, allowInsecure, alpn) in ssl.
func (l TrojanLink) ApplySSL(ssl *SSL) {
	ssl.SNI = l.SNI
	ssl.Verify = !l.AllowInsecure
	if len(l.ALPN) > 0 {
		ssl.ALPN = l.ALPN
	}
}

// ClientConfig is a client config (trojan-gfw's defaults) for the server in the link, listening on
// local (host:port).
func (l TrojanLink) ClientConfig(localHost string, localPort int) *Config {
	cfg := Default(RunClient)
	cfg.LocalAddr, cfg.LocalPort = localHost, localPort
	cfg.RemoteAddr, cfg.RemotePort = l.Host, l.Port
	cfg.Password = []string{l.Password}
	l.ApplySSL(&cfg.SSL)
	return cfg
}
