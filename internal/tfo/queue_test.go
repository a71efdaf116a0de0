package tfo

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// fast_open_qlen is a floor raised to the listen backlog, unless exact.
func TestQueueLen(t *testing.T) {
	for _, tc := range []struct {
		configured int
		exact      bool
		backlog    int
		want       int
	}{
		{20, false, 4096, 4096},
		{0, false, 4096, 4096},
		{8192, false, 4096, 8192}, // the kernel caps it; the config asked for more
		{20, true, 4096, 20},
		{0, true, 4096, DefaultQueueLen},
	} {
		if got := QueueLen(tc.configured, tc.exact, tc.backlog); got != tc.want {
			t.Errorf("QueueLen(%d, %v, %d) = %d, want %d", tc.configured, tc.exact, tc.backlog, got, tc.want)
		}
	}
	if fix := QueueFix(20, 4096, true); !strings.Contains(fix, `"fast_open_qlen": 1024`) || !strings.Contains(fix, "exact_qlen") {
		t.Errorf("fix for an exact queue of 20: %s", fix)
	}
	if fix := QueueFix(4096, 4096, false); !strings.Contains(fix, `"fast_open_qlen": 16384`) || !strings.Contains(fix, "sysctl -w net.core.somaxconn=16384") {
		t.Errorf("fix for a queue at somaxconn: %s", fix)
	}
}

// The watch logs one warning per interval in which the TFO queue overflowed, with the fix, and
// nothing while it does not; its rates follow the counters.
func TestQueueWatch(t *testing.T) {
	var mu sync.Mutex
	over := uint64(100)
	read := func() (map[string]uint64, error) {
		mu.Lock()
		defer mu.Unlock()
		return map[string]uint64{CounterTFOListenOverflow: over}, nil
	}
	var logs bytes.Buffer
	var lmu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&lmu, &logs}, nil))
	w := &QueueWatch{Interval: 50 * time.Millisecond, Read: read, Logger: log, Limit: 20, Fix: QueueFix(20, 4096, true)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	time.Sleep(120 * time.Millisecond) // two quiet intervals
	mu.Lock()
	over += 30
	mu.Unlock()
	waitRate := func(grown bool) QueueRates {
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if r := w.Rates(); (r.TFOListenOverflow > 0) == grown && r.Interval > 0 {
				return r
			}
			time.Sleep(2 * time.Millisecond)
		}
		t.Fatalf("rate never became grown=%v: %+v", grown, w.Rates())
		return QueueRates{}
	}
	rates := waitRate(true) // the interval that sees the growth
	_ = waitRate(false)     // quiet again
	time.Sleep(120 * time.Millisecond)
	cancel()
	<-done
	lmu.Lock()
	out := logs.String()
	lmu.Unlock()
	if n := strings.Count(out, "TFO queue full"); n != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", n, out)
	}
	for _, want := range []string{"refused=30", "qlen=20", `fast_open_qlen\": 1024`} {
		if !strings.Contains(out, want) {
			t.Errorf("warning lacks %s:\n%s", want, out)
		}
	}
	if want := 30 / rates.Interval.Seconds(); rates.TFOListenOverflow < want*0.99 || rates.TFOListenOverflow > want*1.01 {
		t.Errorf("rate after the growth: %+v, want %.1f/s", rates, want)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
