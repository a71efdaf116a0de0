package labproxy_test

import (
	"context"
	"testing"
	"time"
)

// BenchmarkTTFB measures the time to the first byte of an HTTP response through SOCKS5 → client →
// server → origin, a new connection each time, at an emulated RTT of 50 ms, with TFO on every leg and
// with TFO off. It reports the median and p99 as multiples of the RTT (the TLS 1.3 floor without
// 0-RTT is 2 RTT) and asserts nothing about time:
//
//	go test -run '^$' -bench TTFB -benchtime 100x ./internal/tfo
func BenchmarkTTFB(b *testing.B) {
	for _, bc := range []struct {
		name string
		o    rigOptions
	}{
		{"tfo=on", rigOptions{RTT: proofRTT, ClientTFO: true, ServerListen: true, ServerDial: true}},
		{"tfo=off", rigOptions{RTT: proofRTT}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := newRig(b, bc.o)
			for range 2 { // cookies for both legs
				if _, err := r.fetch(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			ttfb := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				d, err := r.fetch(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				ttfb = append(ttfb, d)
			}
			b.StopTimer()
			med, p99 := inRTT(ttfb, proofRTT)
			b.ReportMetric(med, "median-RTT")
			b.ReportMetric(p99, "p99-RTT")
			b.ReportMetric(0, "ns/op") // wall time per fetch is the metric above, in RTTs
		})
	}
}
