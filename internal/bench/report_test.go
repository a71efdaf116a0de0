package bench

import (
	"bytes"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDist(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	d := distOf(ds)
	want := Dist{Min: time.Millisecond, Median: 50 * time.Millisecond, P90: 90 * time.Millisecond, P99: 99 * time.Millisecond, Max: 100 * time.Millisecond}
	if d != want {
		t.Errorf("distOf = %+v, want %+v", d, want)
	}
	if one := distOf([]time.Duration{7}); one.Min != 7 || one.Median != 7 || one.P99 != 7 || one.Max != 7 {
		t.Errorf("one sample: %+v", one)
	}
	if (distOf(nil) != Dist{}) {
		t.Error("no samples: non-zero Dist")
	}
}

// synthetic makes a report where TFO takes about 2 RTT and plain 3, with one plain failure.
func synthetic() *Report {
	const rtt = 50 * time.Millisecond
	var samples []Sample
	for i := range 20 {
		jitter := time.Duration(i) * 100 * time.Microsecond
		samples = append(samples,
			Sample{Mode: ModeTFO, Seq: 2 * i, OK: true, Outcome: "accepted", TTFB: 2*rtt + jitter, RTT: rtt},
			Sample{Mode: ModePlain, Seq: 2*i + 1, OK: i != 7, Outcome: "not_attempted", TTFB: 3*rtt + jitter, RTT: rtt})
	}
	samples[15].Err, samples[15].TTFB = "response 1: EOF", 0
	o := Options{Server: "192.0.2.1:443", URL: "http://192.0.2.2/", N: 20, Warmup: 2, Concurrency: 1, RequestsPerConn: 1}
	r := newReport(o, samples, 10*time.Second)
	r.Lab = &LabInfo{RTT: rtt}
	return r
}

func TestReport(t *testing.T) {
	r := synthetic()
	tfoStats, plain := r.Mode(ModeTFO), r.Mode(ModePlain)
	if tfoStats.Attempts != 20 || tfoStats.Successes != 20 || plain.Successes != 19 || plain.SuccessRate != 0.95 {
		t.Errorf("counts: tfo %+v plain %+v", tfoStats, plain)
	}
	if tfoStats.Outcomes["accepted"] != 20 || plain.Outcomes["not_attempted"] != 20 {
		t.Errorf("outcomes: %v %v", tfoStats.Outcomes, plain.Outcomes)
	}
	if r.RTT != 50*time.Millisecond || r.SavingRTTs < 0.99 || r.SavingRTTs > 1.01 {
		t.Errorf("RTT %v, saving %v = %.2f RTT", r.RTT, r.Saving, r.SavingRTTs)
	}
	if len(plain.Errors) != 1 || plain.Errors[0] != "response 1: EOF" {
		t.Errorf("errors %v", plain.Errors)
	}
	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"median ms", "p99 ms", "tfo  20/20", "plain  19/20", "tfo   accepted 20", "= 1.00 RTT, p90", "plain error: response 1: EOF"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}
	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Samples) != 40 || back.Modes[0].TTFB != tfoStats.TTFB || back.Lab.RTT != 50*time.Millisecond {
		t.Errorf("JSON round trip lost data: %d samples, %+v", len(back.Samples), back.Modes)
	}
}

func TestPlot(t *testing.T) {
	r := synthetic()
	dir := t.TempDir()
	pngFile, svgFile := filepath.Join(dir, "cdf.png"), filepath.Join(dir, "cdf.svg")
	if err := r.Plot(pngFile); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(pngFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 500 || b.Dy() < 250 {
		t.Errorf("PNG of %v", b)
	}
	if err := r.Plot(svgFile); err != nil {
		t.Fatal(err)
	}
	svg, err := os.ReadFile(svgFile)
	if err != nil || !bytes.Contains(svg, []byte("<svg")) || !bytes.Contains(svg, []byte("tfo: median")) {
		t.Errorf("SVG: %v, %.200s", err, svg)
	}
	if err := r.Plot(filepath.Join(dir, "cdf.pdf")); err == nil {
		t.Error("a .pdf name was accepted")
	}
}

func TestParseTarget(t *testing.T) {
	tg, err := parseTarget("http://198.51.100.7:8080/a?b=c")
	if err != nil || tg.dest.String() != "198.51.100.7:8080" || tg.path != "/a?b=c" || tg.host != "198.51.100.7:8080" {
		t.Errorf("%+v %v", tg, err)
	}
	tg, err = parseTarget("http://example.com")
	if err != nil || tg.dest.String() != "example.com:80" || tg.path != "/" {
		t.Errorf("%+v %v", tg, err)
	}
	if !strings.Contains(string(tg.request(true)), "Connection: close\r\n") || !strings.Contains(string(tg.request(false)), "Connection: keep-alive\r\n") {
		t.Error("Connection header")
	}
	for _, bad := range []string{"https://example.com/", "ftp://x/", "::"} {
		if _, err := parseTarget(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
