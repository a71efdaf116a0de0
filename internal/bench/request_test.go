package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRequestProblem(t *testing.T) {
	ok := Request{Sources: 1, N: 1, Warmup: 0, Concurrency: 1, PerConn: 1, Timeout: time.Second, URL: "http://x/", Mode: "both"}
	for _, tc := range []struct {
		name string
		edit func(r *Request)
		want string // a substring of the problem; "" for none
	}{
		{"ok", func(*Request) {}, ""},
		{"lab without url", func(r *Request) { r.Lab, r.URL, r.LabOnly, r.Fault = true, "", true, FaultStripTFO }, ""},
		{"two sources", func(r *Request) { r.Sources = 2 }, "exactly one of"},
		{"no source", func(r *Request) { r.Sources = 0 }, "exactly one of"},
		{"n zero", func(r *Request) { r.N = 0 }, "must be ≥ 1"},
		{"negative warmup", func(r *Request) { r.Warmup = -1 }, "--warmup ≥ 0"},
		{"no timeout", func(r *Request) { r.Timeout = 0 }, "must be ≥ 1"},
		{"no url", func(r *Request) { r.URL = "" }, "--url is required"},
		{"lab flag without lab", func(r *Request) { r.LabOnly = true }, "need --lab"},
		{"bad mode", func(r *Request) { r.Mode = "warm" }, "--mode wants"},
		{"bad plot", func(r *Request) { r.Plot = "x.jpg" }, "--plot wants"},
		{"svg plot", func(r *Request) { r.Plot = "x.svg" }, ""},
		{"bad fault", func(r *Request) { r.Lab, r.Fault = true, "nope" }, "nope"},
	} {
		r := ok
		tc.edit(&r)
		got := r.Problem()
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: Problem() = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestParseLoss(t *testing.T) {
	for in, want := range map[string]float64{"": 0, "2%": 0.02, "0.02": 0.02, "100%": 1, "0": 0} {
		if got, err := ParseLoss(in); err != nil || got != want {
			t.Errorf("ParseLoss(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"x", "2 %", "101%", "-0.1", "1.5"} {
		if _, err := ParseLoss(in); err == nil {
			t.Errorf("ParseLoss(%q): no error", in)
		}
	}
}

func TestLabFromServerConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "server.json")
	if err := os.WriteFile(file, []byte(`{"run_type": "server", "ssl": {"reuse_session": false}, "tcp": {"fast_open_qlen": 50}, "fastrojan": {"tfo": {"exact_qlen": true}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	o := LabOptions{}
	if err := o.FromServerConfig(file); err != nil || o.QLen != 50 || !o.ExactQLen {
		t.Errorf("from the config: %+v, %v; want QLen 50, exact", o, err)
	}
	if o.SSL == nil || o.SSL.ReuseSession || o.SSL.SessionTimeout != 600 {
		t.Errorf("ssl from the config: %+v; want reuse_session false, the rest defaults", o.SSL)
	}
	o = LabOptions{QLen: 7} // --lab-qlen wins
	if err := o.FromServerConfig(file); err != nil || o.QLen != 7 || !o.ExactQLen {
		t.Errorf("with QLen set: %+v, %v; want QLen 7, exact", o, err)
	}
	if err := (&LabOptions{}).FromServerConfig(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("a missing file: no error")
	}
}
