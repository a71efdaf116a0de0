package bench

import (
	"context"
	"strings"
	"testing"
	"time"
)

// Warm mode in the lab: a third mode whose streams ride spares from the pool and reach their first
// byte about a round trip sooner than cold TFO; the text report says so.
func TestLabBenchWarm(t *testing.T) {
	const rtt, n = 30 * time.Millisecond, 10
	lab := startLab(t, rtt, "")
	opts := lab.Options()
	opts.N, opts.Warm = n, true
	rep, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	var b writerString
	_ = rep.WriteText(&b)
	t.Logf("\n%s", b)
	if len(rep.Modes) != 3 || rep.Modes[2].Mode != ModeWarm || len(rep.Samples) != 3*n {
		t.Fatalf("report shape: %d modes, %d samples", len(rep.Modes), len(rep.Samples))
	}
	for i, s := range rep.Samples {
		if want := []string{ModeTFO, ModePlain, ModeWarm}[i%3]; s.Mode != want {
			t.Fatalf("sample %d: mode %s, want %s", i, s.Mode, want)
		}
	}
	w, cold := rep.Mode(ModeWarm), rep.Mode(ModeTFO)
	if w.Successes != n || cold.Successes != n {
		t.Fatalf("warm %d/%d, tfo %d/%d ok", w.Successes, n, cold.Successes, n)
	}
	if w.Outcomes[OutcomeSpare] < n-1 || rep.Pool == nil || rep.Pool.Hits+rep.Pool.Joined < int64(n-1) {
		t.Errorf("warm outcomes %v, pool %+v: want (nearly) every warm stream on a spare", w.Outcomes, rep.Pool)
	}
	// Cold TFO is 2 RTT, warm 1 RTT: warm must save well over half a round trip.
	if d := cold.TTFB.Median - w.TTFB.Median; d < rtt/2 {
		t.Errorf("warm median %v, cold TFO median %v: the warm path saves less than half an RTT", w.TTFB.Median, cold.TTFB.Median)
	}
	if !strings.Contains(b.String(), "warm streams:") || !strings.Contains(b.String(), "saving of the warm path over cold TFO") {
		t.Errorf("text report lacks the warm lines")
	}
}
