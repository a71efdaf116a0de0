package users_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/trojan"
	"github.com/fastrojan/fastrojan/internal/users"
	"github.com/fastrojan/fastrojan/internal/users/userdb/testdb"
)

// TestLedgerQuotaAcrossFarm: two ledgers on one table (two servers of a farm) with a flush interval
// far too long to help. A user crosses its quota on A: A writes its counts at once, and B refuses the
// user within one refresh of that write.
func TestLedgerQuotaAcrossFarm(t *testing.T) {
	backends(t, func(t *testing.T, d *testdb.DB) {
		const refresh = time.Second
		d.AddUser(t, "q", "pw-q", 10_000)
		a := newLedger(t, d, users.LedgerOptions{Refresh: refresh, Flush: time.Hour})
		b := newLedger(t, d, users.LedgerOptions{Refresh: refresh, Flush: time.Hour})
		within(t, 3*time.Second, "user loaded", func() bool { return found(a, "pw-q") && found(b, "pw-q") })
		u, _ := a.Lookup(trojan.HashPassword("pw-q"))
		var cut atomic.Bool
		s, ok := a.Begin(u, func() { cut.Store(true) })
		if !ok {
			t.Fatal("Begin refused")
		}
		defer s.End()
		s.Down().Add(10_001)
		crossed := time.Now()
		within(t, 2*time.Second, "over-quota connection cut on A", cut.Load)
		within(t, refresh+users.Tick+2*time.Second, "B refuses the user", func() bool { return !found(b, "pw-q") })
		t.Logf("B refuses the user %v after it crossed its quota on A (refresh %v, flush 1h)", (time.Since(crossed)).Round(time.Millisecond), refresh)
		if down, up := d.Usage(t, "pw-q"); down+up != 10_001 {
			t.Errorf("table shows %d bytes, A counted 10001", down+up)
		}
	})
}
