package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// minimal is a valid client config; tests set one key on top of it.
const minimal = `{"run_type":"client","local_addr":"127.0.0.1","local_port":1080,"remote_addr":"example.com","remote_port":443,"password":["pw"]}`

// withKey returns minimal with the dotted key (a.b) set to the raw JSON value.
func withKey(t *testing.T, key, value string) []byte {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal([]byte(minimal), &doc); err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal([]byte(value), &v); err != nil {
		t.Fatalf("bad test value %s: %v", value, err)
	}
	parts := strings.Split(key, ".")
	m := doc
	for _, p := range parts[:len(parts)-1] {
		sub, ok := m[p].(map[string]any)
		if !ok {
			sub = map[string]any{}
			m[p] = sub
		}
		m = sub
	}
	m[parts[len(parts)-1]] = v
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type keyCase struct {
	key      string
	value    string // valid JSON value different from the default
	get      func(*Config) any
	want     any
	wrong    string // a value of the wrong type
	expected string // what the error says was expected
}

var keyCases = []keyCase{
	{"run_type", `"server"`, func(c *Config) any { return c.RunType }, "server", `1`, "a string"},
	{"local_addr", `"::1"`, func(c *Config) any { return c.LocalAddr }, "::1", `true`, "a string"},
	{"local_port", `1081`, func(c *Config) any { return c.LocalPort }, 1081, `"1081"`, "an integer"},
	{"remote_addr", `"10.0.0.1"`, func(c *Config) any { return c.RemoteAddr }, "10.0.0.1", `[]`, "a string"},
	{"remote_port", `8443`, func(c *Config) any { return c.RemotePort }, 8443, `8443.5`, "an integer"},
	{"target_addr", `"t.example"`, func(c *Config) any { return c.TargetAddr }, "t.example", `{}`, "a string"},
	{"target_port", `5901`, func(c *Config) any { return c.TargetPort }, 5901, `null`, "an integer"},
	{"password", `["a","b"]`, func(c *Config) any { return c.Password }, []string{"a", "b"}, `"a"`, "an array of strings"},
	{"udp_timeout", `30`, func(c *Config) any { return c.UDPTimeout }, 30, `"30"`, "an integer"},
	{"log_level", `3`, func(c *Config) any { return c.LogLevel }, 3, `"warn"`, "an integer"},
	{"ssl.verify", `false`, func(c *Config) any { return c.SSL.Verify }, false, `"no"`, "a boolean"},
	{"ssl.verify_hostname", `false`, func(c *Config) any { return c.SSL.VerifyHostname }, false, `0`, "a boolean"},
	{"ssl.cert", `"/etc/ca.pem"`, func(c *Config) any { return c.SSL.Cert }, "/etc/ca.pem", `1`, "a string"},
	{"ssl.key", `"/k.pem"`, func(c *Config) any { return c.SSL.Key }, "/k.pem", `false`, "a string"},
	{"ssl.key_password", `"s3"`, func(c *Config) any { return c.SSL.KeyPassword }, "s3", `1`, "a string"},
	{"ssl.cipher", `"AES128-SHA"`, func(c *Config) any { return c.SSL.Cipher }, "AES128-SHA", `["AES128-SHA"]`, "a string"},
	{"ssl.cipher_tls13", `"TLS_AES_128_GCM_SHA256"`, func(c *Config) any { return c.SSL.CipherTLS13 }, "TLS_AES_128_GCM_SHA256", `1`, "a string"},
	{"ssl.prefer_server_cipher", `false`, func(c *Config) any { return c.SSL.PreferServerCipher }, false, `"false"`, "a boolean"},
	{"ssl.sni", `"sni.example"`, func(c *Config) any { return c.SSL.SNI }, "sni.example", `null`, "a string"},
	{"ssl.alpn", `["h2","http/1.1"]`, func(c *Config) any { return c.SSL.ALPN }, []string{"h2", "http/1.1"}, `"h2"`, "an array of strings"},
	{"ssl.alpn_port_override", `{"h2":81}`, func(c *Config) any { return c.SSL.ALPNPortOverride }, map[string]int{"h2": 81}, `[81]`, "an object"},
	{"ssl.reuse_session", `false`, func(c *Config) any { return c.SSL.ReuseSession }, false, `1`, "a boolean"},
	{"ssl.session_ticket", `true`, func(c *Config) any { return c.SSL.SessionTicket }, true, `"true"`, "a boolean"},
	{"ssl.session_timeout", `300`, func(c *Config) any { return c.SSL.SessionTimeout }, 300, `"300"`, "an integer"},
	{"ssl.plain_http_response", `"/r.txt"`, func(c *Config) any { return c.SSL.PlainHTTPResponse }, "/r.txt", `1`, "a string"},
	{"ssl.curves", `"X25519"`, func(c *Config) any { return c.SSL.Curves }, "X25519", `["X25519"]`, "a string"},
	{"ssl.dhparam", `"/dh.pem"`, func(c *Config) any { return c.SSL.DHParam }, "/dh.pem", `0`, "a string"},
	{"tcp.prefer_ipv4", `true`, func(c *Config) any { return c.TCP.PreferIPv4 }, true, `"yes"`, "a boolean"},
	{"tcp.no_delay", `false`, func(c *Config) any { return c.TCP.NoDelay }, false, `0`, "a boolean"},
	{"tcp.keep_alive", `false`, func(c *Config) any { return c.TCP.KeepAlive }, false, `null`, "a boolean"},
	{"tcp.reuse_port", `true`, func(c *Config) any { return c.TCP.ReusePort }, true, `1`, "a boolean"},
	{"tcp.fast_open", `true`, func(c *Config) any { return c.TCP.FastOpen }, true, `"yes"`, "a boolean"},
	{"tcp.fast_open_qlen", `64`, func(c *Config) any { return c.TCP.FastOpenQLen }, 64, `true`, "an integer"},
	{"mysql.enabled", `true`, func(c *Config) any { return c.MySQL.Enabled }, true, `"1"`, "a boolean"},
	{"mysql.server_addr", `"db"`, func(c *Config) any { return c.MySQL.ServerAddr }, "db", `1`, "a string"},
	{"mysql.server_port", `3307`, func(c *Config) any { return c.MySQL.ServerPort }, 3307, `"3307"`, "an integer"},
	{"mysql.database", `"t2"`, func(c *Config) any { return c.MySQL.Database }, "t2", `[]`, "a string"},
	{"mysql.username", `"u"`, func(c *Config) any { return c.MySQL.Username }, "u", `{}`, "a string"},
	{"mysql.password", `"p"`, func(c *Config) any { return c.MySQL.Password }, "p", `1`, "a string"},
	{"mysql.key", `"/mk"`, func(c *Config) any { return c.MySQL.Key }, "/mk", `1`, "a string"},
	{"mysql.cert", `"/mc"`, func(c *Config) any { return c.MySQL.Cert }, "/mc", `1`, "a string"},
	{"mysql.ca", `"/ca"`, func(c *Config) any { return c.MySQL.CA }, "/ca", `1`, "a string"},
	{"mysql.cafile", `"/cafile"`, func(c *Config) any { return c.MySQL.CA }, "/cafile", `1`, "a string"},
	{"fastrojan.handshake_timeout", `"3s"`, func(c *Config) any { return c.Fastrojan.HandshakeTimeout }, Duration(3 * time.Second), `true`, "a duration"},
	{"fastrojan.request_timeout", `2.5`, func(c *Config) any { return c.Fastrojan.RequestTimeout }, Duration(2500 * time.Millisecond), `"soon"`, "a duration"},
	{"fastrojan.idle_timeout", `"1m30s"`, func(c *Config) any { return c.Fastrojan.IdleTimeout }, Duration(90 * time.Second), `[]`, "a duration"},
	{"fastrojan.max_conns", `100`, func(c *Config) any { return c.Fastrojan.MaxConns }, 100, `"100"`, "an integer"},
	{"fastrojan.first_payload_wait", `"150ms"`, func(c *Config) any { return c.Fastrojan.FirstPayloadWait }, Duration(150 * time.Millisecond), `null`, "a duration"},
	{"fastrojan.shutdown_timeout", `30`, func(c *Config) any { return c.Fastrojan.ShutdownTimeout }, Duration(30 * time.Second), `{}`, "a duration"},
	{"fastrojan.log_format", `"json"`, func(c *Config) any { return c.Fastrojan.LogFormat }, "json", `1`, "a string"},
	{"fastrojan.farm.secret", `"0123456789abcdef-farm"`, func(c *Config) any { return c.Fastrojan.Farm.Secret }, "0123456789abcdef-farm", `1`, "a string"},
	{"fastrojan.farm.secret_file", `"/etc/farm.key"`, func(c *Config) any { return c.Fastrojan.Farm.SecretFile }, "/etc/farm.key", `[]`, "a string"},
	{"fastrojan.farm.rotation", `"12h"`, func(c *Config) any { return c.Fastrojan.Farm.Rotation }, Duration(12 * time.Hour), `true`, "a duration"},
	{"fastrojan.farm.skew", `5`, func(c *Config) any { return c.Fastrojan.Farm.Skew }, Duration(5 * time.Second), `"later"`, "a duration"},
	{"fastrojan.tfo.client", `false`, func(c *Config) any { return c.Fastrojan.TFO.Client }, ptr(false), `"off"`, "a boolean"},
	{"fastrojan.tfo.server_listen", `true`, func(c *Config) any { return c.Fastrojan.TFO.ServerListen }, ptr(true), `1`, "a boolean"},
	{"fastrojan.tfo.server_dial", `false`, func(c *Config) any { return c.Fastrojan.TFO.ServerDial }, ptr(false), `[]`, "a boolean"},
	{"fastrojan.tls_site", `"127.0.0.1:8443"`, func(c *Config) any { return c.Fastrojan.TLSSite }, "127.0.0.1:8443", `8443`, "a string"},
	{"fastrojan.max_conns_per_ip", `64`, func(c *Config) any { return c.Fastrojan.MaxConnsPerIP }, 64, `"many"`, "an integer"},
	{"fastrojan.tfo.exact_qlen", `true`, func(c *Config) any { return c.Fastrojan.TFO.ExactQLen }, true, `"yes"`, "a boolean"},
	{"fastrojan.metrics_listen", `"127.0.0.1:9100"`, func(c *Config) any { return c.Fastrojan.MetricsListen }, "127.0.0.1:9100", `9100`, "a string"},
	{"fastrojan.pprof", `false`, func(c *Config) any { return c.Fastrojan.Pprof }, false, `"yes"`, "a boolean"},
	{"fastrojan.users.sqlite", `"/var/lib/fastrojan/users.db"`, func(c *Config) any { return c.Fastrojan.Users.SQLite }, "/var/lib/fastrojan/users.db", `1`, "a string"},
	{"fastrojan.users.refresh", `"3s"`, func(c *Config) any { return c.Fastrojan.Users.Refresh }, Duration(3 * time.Second), `true`, "a duration"},
	{"fastrojan.users.flush", `30`, func(c *Config) any { return c.Fastrojan.Users.Flush }, Duration(30 * time.Second), `"often"`, "a duration"},
	{"fastrojan.users.journal", `"/var/lib/fastrojan/journal"`, func(c *Config) any { return c.Fastrojan.Users.Journal }, "/var/lib/fastrojan/journal", `[]`, "a string"},
	{"fastrojan.users.per_user_metrics", `true`, func(c *Config) any { return c.Fastrojan.Users.PerUserMetrics }, true, `"yes"`, "a boolean"},
	{"fastrojan.acme.domains", `["proxy.example.com"]`, func(c *Config) any { return c.Fastrojan.ACME.Domains }, []string{"proxy.example.com"}, `"proxy.example.com"`, "an array"},
	{"fastrojan.acme.email", `"ops@example.com"`, func(c *Config) any { return c.Fastrojan.ACME.Email }, "ops@example.com", `1`, "a string"},
	{"fastrojan.acme.ca", `"https://ca.test/dir"`, func(c *Config) any { return c.Fastrojan.ACME.CA }, "https://ca.test/dir", `[]`, "a string"},
	{"fastrojan.acme.ca_root", `"/ca.pem"`, func(c *Config) any { return c.Fastrojan.ACME.CARoot }, "/ca.pem", `true`, "a string"},
	{"fastrojan.acme.storage", `"/var/lib/x"`, func(c *Config) any { return c.Fastrojan.ACME.Storage }, "/var/lib/x", `{}`, "a string"},
	{"fastrojan.acme.http_listen", `""`, func(c *Config) any { return c.Fastrojan.ACME.HTTPListen }, "", `80`, "a string"},
	{"fastrojan.acme.challenges", `["http-01"]`, func(c *Config) any { return c.Fastrojan.ACME.Challenges }, []string{"http-01"}, `"http-01"`, "an array"},
	{"fastrojan.pool.spares", `0`, func(c *Config) any { return c.Fastrojan.Pool.Spares }, 0, `"4"`, "an integer"},
	{"fastrojan.pool.linger", `"20s"`, func(c *Config) any { return c.Fastrojan.Pool.Linger }, Duration(20 * time.Second), `true`, "a duration"},
	{"fastrojan.pool.max_age", `2`, func(c *Config) any { return c.Fastrojan.Pool.MaxAge }, Duration(2 * time.Second), `[]`, "a duration"},
	{"mux.enabled", `true`, func(c *Config) any { return c.Mux.Enabled }, true, `"yes"`, "a boolean"},
	{"mux.concurrency", `4`, func(c *Config) any { return c.Mux.Concurrency }, 4, `"4"`, "an integer"},
	{"mux.idle_timeout", `30`, func(c *Config) any { return c.Mux.IdleTimeout }, 30, `"30s"`, "an integer"},
	{"fastrojan.spare_timeout", `"30s"`, func(c *Config) any { return c.Fastrojan.SpareTimeout }, Duration(30 * time.Second), `{}`, "a duration"},
}

// TestEveryKnownKeyIsCovered fails when a key is added to the structs without a row in keyCases.
func TestEveryKnownKeyIsCovered(t *testing.T) {
	covered := map[string]bool{}
	for _, kc := range keyCases {
		covered[kc.key] = true
	}
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := range typ.NumField() {
			name := jsonName(typ.Field(i))
			if name == "" {
				continue
			}
			if ft := typ.Field(i).Type; ft.Kind() == reflect.Struct && ft != durationType {
				walk(prefix+name+".", ft)
				continue
			}
			if !covered[prefix+name] {
				t.Errorf("key %s has no row in keyCases", prefix+name)
			}
		}
	}
	walk("", reflect.TypeFor[Config]())
}

func TestEveryKeyDecodes(t *testing.T) {
	for _, kc := range keyCases {
		t.Run(kc.key, func(t *testing.T) {
			c, err := Decode(withKey(t, kc.key, kc.value), "config.json")
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got := kc.get(c); !reflect.DeepEqual(got, kc.want) {
				t.Errorf("%s = %#v, want %#v", kc.key, got, kc.want)
			}
		})
	}
}

func TestEveryTypeError(t *testing.T) {
	for _, kc := range keyCases {
		t.Run(kc.key, func(t *testing.T) {
			_, err := Decode(withKey(t, kc.key, kc.wrong), "config.json")
			if err == nil {
				t.Fatalf("value %s for %s was accepted", kc.wrong, kc.key)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *config.Error", err)
			}
			wantPath := "$." + kc.key
			if ce.Path != wantPath {
				t.Errorf("path = %q, want %q (error: %v)", ce.Path, wantPath, err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "config.json: "+wantPath+": expected "+kc.expected) {
				t.Errorf("error %q does not start with file, path and %q", msg, "expected "+kc.expected)
			}
			if !strings.Contains(msg, "got ") {
				t.Errorf("error %q does not say what it got", msg)
			}
		})
	}
}

func TestErrorMessages(t *testing.T) {
	cases := []struct {
		name string
		doc  string
		want string
	}{
		{"bool from string", `{"tcp":{"fast_open":"yes"}}`, `config.json: $.tcp.fast_open: expected a boolean (true or false), got string "yes"`},
		{"unknown ssl key", `{"ssl":{"foo":1}}`, `config.json: $.ssl.foo: unknown key (known keys: verify, verify_hostname, cert, key, key_password, cipher, cipher_tls13, prefer_server_cipher, sni, alpn, alpn_port_override, reuse_session, session_ticket, session_timeout, plain_http_response, curves, dhparam)`},
		{"typo suggests", `{"tcp":{"fast_opne":true}}`, `config.json: $.tcp.fast_opne: unknown key; did you mean "fast_open"? (known keys: prefer_ipv4, no_delay, keep_alive, reuse_port, fast_open, fast_open_qlen)`},
		{"ext key at top level", `{"idle_timeout":"1m"}`, `config.json: $.idle_timeout: unknown key; fastrojan settings go inside the "fastrojan" object: did you mean fastrojan.idle_timeout? (known keys: run_type, local_addr, local_port, remote_addr, remote_port, target_addr, target_port, password, udp_timeout, log_level, ssl, tcp, mysql, fastrojan, mux)`},
		{"duplicate", `{"local_port":1,"local_port":2}`, `config.json: $.local_port: duplicate key; give each key once`},
		{"ca and cafile", `{"mysql":{"ca":"a","cafile":"b"}}`, `config.json: $.mysql.cafile: same setting as "ca"; give only one of them`},
		{"array element", `{"password":["a",2]}`, `config.json: $.password[1]: expected a string, got number 2`},
		{"map value", `{"ssl":{"alpn_port_override":{"h2":"81"}}}`, `config.json: $.ssl.alpn_port_override.h2: expected an integer, got string "81"`},
		{"odd map key", `{"ssl":{"alpn_port_override":{"h2 c":true}}}`, `config.json: $.ssl.alpn_port_override["h2 c"]: expected an integer, got boolean true`},
		{"top level not object", `[1]`, `config.json: $: expected an object, got an array`},
		{"ssl not object", `{"ssl":"x"}`, `config.json: $.ssl: expected an object, got string "x"`},
		{"huge integer", `{"local_port":1e20}`, `config.json: $.local_port: number 1e20 is out of range`},
		{"negative duration", `{"fastrojan":{"idle_timeout":"-1s"}}`, `config.json: $.fastrojan.idle_timeout: negative duration -1s`},
		{"long string truncated", `{"local_port":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}`, `config.json: $.local_port: expected an integer, got string "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa…"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.doc), "config.json")
			if err == nil {
				t.Fatal("accepted")
			}
			if err.Error() != tc.want {
				t.Errorf("error\n got: %s\nwant: %s", err, tc.want)
			}
		})
	}
}

func TestSyntaxErrorsGiveLineAndColumn(t *testing.T) {
	cases := []struct {
		doc        string
		line, col  int
		wantPrefix string
	}{
		{"{\n  \"run_type\": \"server\",\n  \"local_port\": 443,,\n}", 3, 21, "config.json:3:21: invalid JSON"},
		{"{\n\t\"a\": tru\n}", 2, 10, "config.json:2:10: invalid JSON"},
		{"", 1, 1, "config.json:1:1: invalid JSON"},
		{"{\"ssl\": {", 1, 9, "config.json:1:9: invalid JSON"},
	}
	for _, tc := range cases {
		_, err := Decode([]byte(tc.doc), "config.json")
		var ce *Error
		if !errors.As(err, &ce) {
			t.Fatalf("%q: error %v is not a *config.Error", tc.doc, err)
		}
		if ce.Line != tc.line || ce.Column != tc.col || !strings.HasPrefix(err.Error(), tc.wantPrefix) {
			t.Errorf("%q: got %d:%d %q, want %d:%d prefix %q", tc.doc, ce.Line, ce.Column, err, tc.line, tc.col, tc.wantPrefix)
		}
	}
}

// TestDefaults checks the values a key takes when the file leaves it out: trojan-gfw's src/core/config.cpp.
func TestDefaults(t *testing.T) {
	c, err := Decode([]byte(`{}`), "x.json")
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"run_type", c.RunType, "client"},
		{"udp_timeout", c.UDPTimeout, 60},
		{"log_level", c.LogLevel, 1},
		{"ssl.verify", c.SSL.Verify, true},
		{"ssl.verify_hostname", c.SSL.VerifyHostname, true},
		{"ssl.prefer_server_cipher", c.SSL.PreferServerCipher, true},
		{"ssl.reuse_session", c.SSL.ReuseSession, true},
		{"ssl.session_ticket", c.SSL.SessionTicket, false},
		{"ssl.session_timeout", c.SSL.SessionTimeout, 600},
		{"tcp.prefer_ipv4", c.TCP.PreferIPv4, false},
		{"tcp.no_delay", c.TCP.NoDelay, true},
		{"tcp.keep_alive", c.TCP.KeepAlive, true},
		{"tcp.reuse_port", c.TCP.ReusePort, false},
		{"tcp.fast_open", c.TCP.FastOpen, false},
		{"tcp.fast_open_qlen", c.TCP.FastOpenQLen, 20},
		{"mysql.enabled", c.MySQL.Enabled, false},
		{"mysql.server_addr", c.MySQL.ServerAddr, "127.0.0.1"},
		{"mysql.server_port", c.MySQL.ServerPort, 3306},
		{"mysql.database", c.MySQL.Database, "trojan"},
		{"mysql.username", c.MySQL.Username, "trojan"},
		{"fastrojan.handshake_timeout", c.Fastrojan.HandshakeTimeout.Std(), 10 * time.Second},
		{"fastrojan.request_timeout", c.Fastrojan.RequestTimeout.Std(), 10 * time.Second},
		{"fastrojan.idle_timeout", c.Fastrojan.IdleTimeout.Std(), 5 * time.Minute},
		{"fastrojan.max_conns", c.Fastrojan.MaxConns, 4096},
		{"fastrojan.first_payload_wait", c.Fastrojan.FirstPayloadWait.Std(), 100 * time.Millisecond},
		{"fastrojan.shutdown_timeout", c.Fastrojan.ShutdownTimeout.Std(), 10 * time.Second},
		{"fastrojan.log_format", c.Fastrojan.LogFormat, "text"},
		{"fastrojan.pool.spares", c.Fastrojan.Pool.Spares, 8},
		{"fastrojan.pool.linger", c.Fastrojan.Pool.Linger.Std(), 10 * time.Second},
		{"fastrojan.pool.max_age", c.Fastrojan.Pool.MaxAge.Std(), 3 * time.Second},
		{"fastrojan.spare_timeout", c.Fastrojan.SpareTimeout.Std(), 60 * time.Second},
		{"mux.enabled", c.Mux.Enabled, false},
		{"mux.concurrency", c.Mux.Concurrency, 8},
		{"mux.idle_timeout", c.Mux.IdleTimeout, 60},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("default %s = %#v, want %#v", ch.name, ch.got, ch.want)
		}
	}
	// A partial "fastrojan" object keeps the defaults of the keys it leaves out; max_conns 0 means default.
	c, err = Decode([]byte(`{"fastrojan":{"idle_timeout":"1m","max_conns":0}}`), "x.json")
	if err != nil {
		t.Fatal(err)
	}
	if c.Fastrojan.IdleTimeout.Std() != time.Minute || c.Fastrojan.HandshakeTimeout.Std() != 10*time.Second || c.Fastrojan.MaxConns != 4096 {
		t.Errorf("partial fastrojan object: %+v", c.Fastrojan)
	}
}

func TestNullArraysAreEmpty(t *testing.T) {
	c, err := Decode([]byte(`{"password":null,"ssl":{"alpn":null,"alpn_port_override":null}}`), "x")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Password) != 0 || len(c.SSL.ALPN) != 0 || len(c.SSL.ALPNPortOverride) != 0 {
		t.Errorf("null did not decode to empty: %+v", c)
	}
}

func TestBOMAccepted(t *testing.T) {
	c, err := Decode(append([]byte("\xef\xbb\xbf"), minimal...), "x")
	if err != nil {
		t.Fatal(err)
	}
	if c.LocalPort != 1080 {
		t.Errorf("local_port = %d", c.LocalPort)
	}
}

func TestHostPorts(t *testing.T) {
	c := Default(RunClient)
	c.LocalAddr, c.LocalPort = "::1", 1080
	c.RemoteAddr, c.RemotePort = "example.com", 443
	c.TargetAddr, c.TargetPort = "10.0.0.1", 5901
	if got := c.LocalHostPort(); got != "[::1]:1080" {
		t.Errorf("LocalHostPort = %q", got)
	}
	if got := c.RemoteHostPort(); got != "example.com:443" {
		t.Errorf("RemoteHostPort = %q", got)
	}
	if got := c.TargetHostPort(); got != "10.0.0.1:5901" {
		t.Errorf("TargetHostPort = %q", got)
	}
}

func TestLevelFromTrojan(t *testing.T) {
	want := map[int]slog.Level{-1: slog.LevelDebug, 0: slog.LevelDebug, 1: slog.LevelInfo, 2: slog.LevelWarn,
		3: slog.LevelError, 4: LevelFatal, 5: LevelOff, 9: LevelOff}
	for in, w := range want {
		if got := LevelFromTrojan(in); got != w {
			t.Errorf("LevelFromTrojan(%d) = %v, want %v", in, got, w)
		}
	}
	// OFF must silence even records logged at trojan-gfw's FATAL.
	if LevelFromTrojan(5) <= LevelFromTrojan(4) {
		t.Error("OFF is not above FATAL")
	}
}

func TestDuration(t *testing.T) {
	ok := map[string]time.Duration{`"150ms"`: 150 * time.Millisecond, `2`: 2 * time.Second, `0.25`: 250 * time.Millisecond, `"1h"`: time.Hour}
	for in, want := range ok {
		var d Duration
		if err := json.Unmarshal([]byte(in), &d); err != nil || d.Std() != want {
			t.Errorf("%s: got %v, %v; want %v", in, d, err, want)
		}
	}
	for _, in := range []string{`"1 second"`, `-1`, `"-5s"`, `true`, `1e300`} {
		var d Duration
		if err := json.Unmarshal([]byte(in), &d); err == nil {
			t.Errorf("%s accepted as %v", in, d)
		}
	}
	b, err := json.Marshal(Duration(1500 * time.Millisecond))
	if err != nil || string(b) != `"1.5s"` {
		t.Errorf("Marshal = %s, %v", b, err)
	}
}

// TestMarshalRoundTrip: a config built in code, written with json.Marshal, reads back identical; the
// written file uses trojan-gfw's keys.
func TestMarshalRoundTrip(t *testing.T) {
	c := Default(RunServer)
	c.LocalAddr, c.LocalPort = "0.0.0.0", 443
	c.RemoteAddr, c.RemotePort = "127.0.0.1", 80
	c.Password = []string{"a", "b"}
	c.SSL.ALPN = []string{"h2"}
	c.SSL.ALPNPortOverride = map[string]int{"h2": 81}
	c.TCP.FastOpen = true
	c.Fastrojan.IdleTimeout = Duration(90 * time.Second)
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"run_type":"server"`, `"fast_open":true`, `"alpn_port_override":{"h2":81}`, `"idle_timeout":"1m30s"`} {
		if !bytes.Contains(b, []byte(k)) {
			t.Errorf("marshalled config lacks %s: %s", k, b)
		}
	}
	back, err := Decode(b, "")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, c) {
		t.Errorf("round trip differs:\n got %+v\nwant %+v", back, c)
	}
}

func TestRedacted(t *testing.T) {
	c := Default(RunServer)
	c.Password = []string{"secret1"}
	c.SSL.KeyPassword = "secret2"
	c.MySQL.Password = "secret3"
	c.Fastrojan.Farm.Secret = "secret4-farm-key-material"
	b, _ := json.Marshal(c.Redacted())
	for _, leak := range []string{"secret1", "secret2", "secret3", "secret4"} {
		if bytes.Contains(b, []byte(leak)) {
			t.Errorf("Redacted leaks %s: %s", leak, b)
		}
	}
	if c.Password[0] != "secret1" || c.SSL.KeyPassword != "secret2" {
		t.Error("Redacted modified the original")
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	cert := writeFile(t, dir, "cert.pem", "x")
	key := writeFile(t, dir, "key.pem", "x")
	server := func() *Config {
		c := Default(RunServer)
		c.LocalAddr, c.LocalPort = "0.0.0.0", 443
		c.RemoteAddr, c.RemotePort = "127.0.0.1", 80
		c.Password = []string{"pw"}
		c.SSL.Cert, c.SSL.Key = cert, key
		return c
	}
	client := func() *Config {
		c := Default(RunClient)
		c.LocalAddr, c.LocalPort = "127.0.0.1", 1080
		c.RemoteAddr, c.RemotePort = "example.com", 443
		c.Password = []string{"pw"}
		return c
	}
	if err := server().Validate(); err != nil {
		t.Fatalf("valid server config: %v", err)
	}
	if err := client().Validate(); err != nil {
		t.Fatalf("valid client config: %v", err)
	}
	cases := []struct {
		name   string
		base   func() *Config
		mutate func(*Config)
		want   string
	}{
		{"no password", server, func(c *Config) { c.Password = nil }, "$.password: a server needs at least one password"},
		{"client no password", client, func(c *Config) { c.Password = nil }, "$.password: a client needs a password"},
		{"empty password", server, func(c *Config) { c.Password = []string{"a", ""} }, "$.password[1]: empty password"},
		{"nat without server", client, func(c *Config) { c.RunType = "nat"; c.RemoteAddr = "" }, "$.remote_addr: set the Trojan server's address"},
		{"forward without target", client, func(c *Config) { c.RunType = "forward" }, "$.target_addr: forward mode needs target_addr"},
		{"forward without target port", client, func(c *Config) { c.RunType = "forward"; c.TargetAddr = "x" }, "$.target_port: forward mode's target port must be a port number"},
		{"bad run type", client, func(c *Config) { c.RunType = "relay" }, `$.run_type: unknown run type "relay"`},
		{"port 0", server, func(c *Config) { c.LocalPort = 0 }, "$.local_port: the port to listen on must be a port number 1..65535, got 0"},
		{"port too big", client, func(c *Config) { c.RemotePort = 70000 }, "$.remote_port: the Trojan server's port must be a port number 1..65535, got 70000"},
		{"no local addr", client, func(c *Config) { c.LocalAddr = "" }, "$.local_addr: set the address to listen on"},
		{"server no fallback", server, func(c *Config) { c.RemoteAddr = "" }, "$.remote_addr: a server needs the fallback web server's address"},
		{"no cert", server, func(c *Config) { c.SSL.Cert = "" }, "$.ssl.cert: a server needs a certificate"},
		{"cert missing", server, func(c *Config) { c.SSL.Cert = filepath.Join(dir, "nope.pem") }, "$.ssl.cert: cannot read the certificate: open " + filepath.Join(dir, "nope.pem") + ": no such file or directory"},
		{"cert is dir", server, func(c *Config) { c.SSL.Cert = dir }, "$.ssl.cert: cannot read the certificate: " + dir + " is a directory"},
		{"no key", server, func(c *Config) { c.SSL.Key = "" }, "$.ssl.key: a server needs a private key"},
		{"client ca missing", client, func(c *Config) { c.SSL.Cert = "/nonexistent/ca.pem" }, "$.ssl.cert: cannot read the certificate to trust"},
		{"plain http response missing", server, func(c *Config) { c.SSL.PlainHTTPResponse = "/nonexistent" }, "$.ssl.plain_http_response: cannot read"},
		{"alpn empty", client, func(c *Config) { c.SSL.ALPN = []string{""} }, "$.ssl.alpn[0]: an ALPN protocol name must be 1..255 bytes long"},
		{"alpn override port", server, func(c *Config) { c.SSL.ALPNPortOverride = map[string]int{"h2": 0} }, "$.ssl.alpn_port_override.h2: the fallback port for ALPN h2 must be a port number"},
		{"session timeout", server, func(c *Config) { c.SSL.SessionTimeout = -1 }, "$.ssl.session_timeout: must not be negative"},
		{"udp timeout", client, func(c *Config) { c.UDPTimeout = 0 }, "$.udp_timeout: must be at least 1"},
		{"log level", client, func(c *Config) { c.LogLevel = 6 }, "$.log_level: must be 0 (all)"},
		{"qlen", server, func(c *Config) { c.TCP.FastOpenQLen = -1 }, "$.tcp.fast_open_qlen: must not be negative"},
		{"mysql port", server, func(c *Config) { c.MySQL.Enabled = true; c.MySQL.ServerPort = 0 }, "$.mysql.server_port: the MySQL server's port must be a port number"},
		{"mysql ca", server, func(c *Config) { c.MySQL.Enabled = true; c.MySQL.CA = "/nonexistent" }, "$.mysql.ca: cannot read the MySQL CA file"},
		{"mysql key without cert", server, func(c *Config) { c.MySQL.Enabled = true; c.MySQL.Key = key }, "$.mysql.cert: mysql.key and mysql.cert go together"},
		{"zero duration", server, func(c *Config) { c.Fastrojan.IdleTimeout = 0 }, "$.fastrojan.idle_timeout: must be a positive duration"},
		{"long first payload wait", client, func(c *Config) { c.Fastrojan.FirstPayloadWait = Duration(time.Minute) }, "$.fastrojan.first_payload_wait: 1m0s is too long"},
		{"negative spares", client, func(c *Config) { c.Fastrojan.Pool.Spares = -1 }, "$.fastrojan.pool.spares: must be 0 (no spare connections) to 64, got -1"},
		{"tiny spare max age", client, func(c *Config) { c.Fastrojan.Pool.MaxAge = Duration(time.Millisecond) }, "$.fastrojan.pool.max_age: must be between"},
		{"mux concurrency", client, func(c *Config) { c.Mux.Concurrency = 0 }, "$.mux.concurrency: must be 1..1024"},
		{"zero spare timeout", server, func(c *Config) { c.Fastrojan.SpareTimeout = 0 }, "$.fastrojan.spare_timeout: must be a positive duration"},
		{"max conns", server, func(c *Config) { c.Fastrojan.MaxConns = -1 }, "$.fastrojan.max_conns: must not be negative"},
		{"log format", server, func(c *Config) { c.Fastrojan.LogFormat = "xml" }, `$.fastrojan.log_format: must be "text" or "json", got "xml"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.base()
			tc.mutate(c)
			err := c.Validate()
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
	// A server with a MySQL user table needs no password in the file (as trojan-gfw).
	c := server()
	c.Password = nil
	c.MySQL.Enabled = true
	if err := c.Validate(); err != nil {
		t.Errorf("server with mysql and no passwords: %v", err)
	}
	// All problems are reported at once.
	c = server()
	c.LocalPort, c.Password, c.Fastrojan.LogFormat = 0, nil, "xml"
	err := c.Validate()
	for _, p := range []string{"$.local_port", "$.password", "$.fastrojan.log_format"} {
		if err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("joined error %v lacks %s", err, p)
		}
	}
}

func TestParseAndLoad(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "client.json", minimal)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Path != p || c.RemoteHostPort() != "example.com:443" || c.Password[0] != "pw" {
		t.Errorf("Load: %+v", c)
	}
	// Validation errors from Load name the file.
	bad := writeFile(t, dir, "bad.json", `{"run_type":"nat"}`)
	_, err = Load(bad)
	if err == nil || !strings.Contains(err.Error(), bad+`: $.local_addr: set the address to listen on`) {
		t.Errorf("Load(nat) = %v", err)
	}
	// Parse from bytes reports with the given name and leaves Path empty.
	c, err = Parse([]byte(`{"run_type":"client","local_port":1}`), "inline")
	if err == nil || !strings.Contains(err.Error(), "inline: $.local_addr") {
		t.Errorf("Parse = %v", err)
	}
	if c == nil || c.Path != "" {
		t.Errorf("Parse returned %+v", c)
	}
	if _, err := Load(filepath.Join(dir, "missing.json")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v", err)
	}
}

// TestTrojanShippedConfigs reads every config the Debian trojan package ships, unchanged.
func TestTrojanShippedConfigs(t *testing.T) {
	files, _ := filepath.Glob("/usr/share/doc/trojan/examples/*.json-example")
	if _, err := os.Stat("/etc/trojan/config.json"); err == nil {
		files = append(files, "/etc/trojan/config.json")
	}
	if len(files) == 0 {
		t.Skip("Debian package trojan is not installed (apt-get install trojan); no shipped configs to read")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			c, err := Decode(data, f)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			// Every value in the file must land in the Config: re-marshal both and compare key by key.
			var orig map[string]any
			if err := json.Unmarshal(data, &orig); err != nil {
				t.Fatal(err)
			}
			mb, _ := json.Marshal(c)
			var ours map[string]any
			if err := json.Unmarshal(mb, &ours); err != nil {
				t.Fatal(err)
			}
			compareSubset(t, "$", orig, ours)

			err = c.Validate()
			switch c.RunType {
			case RunClient, RunForward, RunNAT:
				if err != nil {
					t.Errorf("Validate: %v", err)
				}
			case RunServer:
				// The shipped server config points at /path/to/...; with real files it must validate.
				if err == nil || !strings.Contains(err.Error(), "$.ssl.cert: cannot read the certificate") {
					t.Errorf("Validate = %v, want the placeholder cert path reported", err)
				}
				dir := t.TempDir()
				fixed := bytes.ReplaceAll(data, []byte("/path/to/certificate.crt"), []byte(writeFile(t, dir, "c.crt", "x")))
				fixed = bytes.ReplaceAll(fixed, []byte("/path/to/private.key"), []byte(writeFile(t, dir, "p.key", "x")))
				if _, err := Parse(fixed, f); err != nil {
					t.Errorf("with real cert files: %v", err)
				}
			}
		})
	}
}

// compareSubset checks that every value in orig appears equal in ours.
func compareSubset(t *testing.T, path string, orig, ours any) {
	t.Helper()
	switch o := orig.(type) {
	case map[string]any:
		m, ok := ours.(map[string]any)
		if !ok {
			t.Errorf("%s: ours is %T", path, ours)
			return
		}
		for k, v := range o {
			ok := k
			if path == "$.mysql" && k == "cafile" {
				ok = "ca"
			}
			compareSubset(t, path+"."+k, v, m[ok])
		}
	default:
		if !reflect.DeepEqual(orig, ours) {
			t.Errorf("%s: file has %#v, config has %#v", path, orig, ours)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte(`{"ssl":{"alpn_port_override":{"h2":81}},"fastrojan":{"idle_timeout":1.5}}`))
	f.Add([]byte(`{"a":1,"a":2}`))
	f.Add([]byte(`{"run_type":"server","fastrojan":{"acme":{"domains":["a.example.com"],"challenges":["http-01"],"http_listen":""}}}`))
	f.Add([]byte(`{"local_port":1e20}`))
	f.Add([]byte("\xef\xbb\xbf{}"))
	f.Add([]byte(`[`))
	files, _ := filepath.Glob("/usr/share/doc/trojan/examples/*.json-example")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := Parse(data, "fuzz.json")
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
		}
		c, err := Decode(data, "fuzz.json")
		if err != nil {
			if c != nil {
				t.Fatal("Decode returned a config with an error")
			}
			return
		}
		// Whatever decodes must survive a write and a re-read unchanged.
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		back, err := Decode(b, "fuzz.json")
		if err != nil {
			t.Fatalf("re-decode of %s: %v", b, err)
		}
		if !reflect.DeepEqual(back, c) {
			t.Fatalf("round trip differs:\n%+v\n%+v", back, c)
		}
	})
}
