package config

import (
	"strings"
	"testing"
)

func ptr[T any](v T) *T { return &v }

// The per-leg switches follow tcp.fast_open unless set, so trojan-gfw's one switch enables every leg
// and our object can turn single legs off (or on).
func TestTFOLegs(t *testing.T) {
	cases := []struct {
		json                 string
		client, listen, dial bool
	}{
		{`{}`, false, false, false},
		{`{"tcp":{"fast_open":true}}`, true, true, true},
		{`{"tcp":{"fast_open":true},"fastrojan":{"tfo":{"server_dial":false}}}`, true, true, false},
		{`{"tcp":{"fast_open":true},"fastrojan":{"tfo":{"client":null}}}`, true, true, true},
		{`{"fastrojan":{"tfo":{"client":true}}}`, true, false, false},
		{`{"tcp":{"fast_open":false},"fastrojan":{"tfo":{"server_listen":true,"server_dial":true}}}`, false, true, true},
	}
	for _, tc := range cases {
		c, err := Decode([]byte(tc.json), "config.json")
		if err != nil {
			t.Fatalf("%s: %v", tc.json, err)
		}
		if c.TFOClient() != tc.client || c.TFOServerListen() != tc.listen || c.TFOServerDial() != tc.dial {
			t.Errorf("%s: client %v listen %v dial %v; want %v %v %v", tc.json,
				c.TFOClient(), c.TFOServerListen(), c.TFOServerDial(), tc.client, tc.listen, tc.dial)
		}
	}
}

func TestTFOUnknownLeg(t *testing.T) {
	_, err := Decode([]byte(`{"fastrojan":{"tfo":{"clinet":true}}}`), "config.json")
	if err == nil || !strings.Contains(err.Error(), `$.fastrojan.tfo.clinet: unknown key; did you mean "client"?`) {
		t.Fatalf("err = %v", err)
	}
}

func TestMetricsListenValidated(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{{"", true}, {"127.0.0.1:9100", true}, {":9100", true}, {"[::1]:0", true}, {"9100", false}, {"localhost:http", false}, {"h:70000", false}} {
		c := Default(RunClient)
		c.LocalAddr, c.LocalPort, c.RemoteAddr, c.RemotePort = "127.0.0.1", 1080, "example.com", 443
		c.Password = []string{"p"}
		c.Fastrojan.MetricsListen = tc.addr
		err := c.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("metrics_listen %q: err = %v, want ok %v", tc.addr, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "$.fastrojan.metrics_listen") {
			t.Errorf("metrics_listen %q: error %q does not name the key", tc.addr, err)
		}
	}
}

// fastrojan.pprof serves on the metrics endpoint: without one it is an error that says what to set.
func TestPprofNeedsMetricsListen(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{{"127.0.0.1:9100", true}, {"", false}} {
		c := Default(RunClient)
		c.LocalAddr, c.LocalPort, c.RemoteAddr, c.RemotePort = "127.0.0.1", 1080, "example.com", 443
		c.Password = []string{"p"}
		c.Fastrojan.MetricsListen, c.Fastrojan.Pprof = tc.addr, true
		err := c.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("pprof with metrics_listen %q: err = %v, want ok %v", tc.addr, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "$.fastrojan.pprof") || err != nil && !strings.Contains(err.Error(), "metrics_listen") {
			t.Errorf("pprof without metrics_listen: error %q does not name the key and the fix", err)
		}
	}
}

// fast_open_qlen is a floor unless fastrojan.tfo.exact_qlen says it is the queue itself.
func TestTFOExactQLen(t *testing.T) {
	for _, tc := range []struct {
		json  string
		qlen  int
		exact bool
	}{
		{`{}`, 20, false},
		{`{"tcp":{"fast_open_qlen":50}}`, 50, false},
		{`{"tcp":{"fast_open_qlen":20},"fastrojan":{"tfo":{"exact_qlen":true}}}`, 20, true},
	} {
		c, err := Decode([]byte(tc.json), "config.json")
		if err != nil {
			t.Fatalf("%s: %v", tc.json, err)
		}
		if q, e := c.TFOQueue(); q != tc.qlen || e != tc.exact {
			t.Errorf("%s: qlen %d exact %v, want %d %v", tc.json, q, e, tc.qlen, tc.exact)
		}
	}
	if _, err := Decode([]byte(`{"fastrojan":{"tfo":{"exact_qlen":"yes"}}}`), "config.json"); err == nil ||
		!strings.Contains(err.Error(), "$.fastrojan.tfo.exact_qlen") {
		t.Errorf("a string for exact_qlen: err = %v", err)
	}
}
