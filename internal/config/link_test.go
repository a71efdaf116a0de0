package config

import (
	"strings"
	"testing"
)

func TestTrojanLinkRoundTrip(t *testing.T) {
	l := TrojanLink{Password: "p@ss:w/rd?#", Host: "2001:db8::1", Port: 8443, SNI: "example.com", AllowInsecure: true, Name: "my server"}
	got, err := ParseTrojanLink(l.String())
	if err != nil {
		t.Fatal(err)
	}
	if got.Password != l.Password || got.Host != l.Host || got.Port != l.Port || got.SNI != l.SNI || !got.AllowInsecure || got.Name != l.Name {
		t.Fatalf("round trip: %+v -> %s -> %+v", l, l.String(), got)
	}
}

func TestParseTrojanLinkFromOtherClients(t *testing.T) {
	l, err := ParseTrojanLink("trojan://secret@proxy.example.net:443?security=tls&type=tcp&headerType=none&peer=cdn.example.net#HK%2001")
	if err != nil {
		t.Fatal(err)
	}
	if l.Password != "secret" || l.Host != "proxy.example.net" || l.Port != 443 || l.SNI != "cdn.example.net" || l.AllowInsecure || l.Name != "HK 01" {
		t.Fatalf("%+v", l)
	}
	if l, err := ParseTrojanLink("trojan://secret@h"); err != nil || l.Port != 443 {
		t.Fatalf("default port: %+v %v", l, err)
	}
}

func TestParseTrojanLinkErrors(t *testing.T) {
	for link, want := range map[string]string{
		"vless://x@h:443":                 "scheme",
		"trojan://h:443":                  "no password",
		"trojan://pw@h:99999":             "port",
		"trojan://pw@h:443?type=ws":       "type=ws",
		"trojan://pw@h:443?security=xtls": "security=xtls",
		"trojan://pw@h:443?flow=x":        "unknown parameter",
	} {
		if _, err := ParseTrojanLink(link); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one mentioning %q", link, err, want)
		}
	}
}

// FuzzParseTrojanLink: whatever parses prints as a link that parses to the same fields.
func FuzzParseTrojanLink(f *testing.F) {
	f.Add("trojan://secret@proxy.example.net:443?security=tls&type=tcp&peer=cdn.example.net#HK%2001")
	f.Add("trojan://p%40ss@[2001:db8::1]:8443?sni=example.com&allowInsecure=1&alpn=h2,http/1.1#x")
	f.Add("trojan://a:b@h")
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseTrojanLink(s)
		if err != nil {
			return
		}
		back, err := ParseTrojanLink(l.String())
		if err != nil {
			t.Fatalf("%q parsed, but its own printing %q does not: %v", s, l.String(), err)
		}
		if back.Password != l.Password || back.Host != l.Host || back.Port != l.Port || back.SNI != l.SNI ||
			back.AllowInsecure != l.AllowInsecure || back.Name != l.Name || strings.Join(back.ALPN, ",") != strings.Join(l.ALPN, ",") {
			t.Fatalf("round trip of %q: %+v then %+v", s, l, back)
		}
	})
}
