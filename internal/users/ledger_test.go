package users_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/trojan"
	"github.com/fastrojan/fastrojan/internal/users"
	"github.com/fastrojan/fastrojan/internal/users/userdb/testdb"
)

func backends(t *testing.T, f func(t *testing.T, d *testdb.DB)) {
	t.Run("sqlite", func(t *testing.T) { f(t, testdb.SQLite(t)) })
	t.Run("mysql", func(t *testing.T) { f(t, testdb.MySQL(t)) })
}

func newLedger(t testing.TB, d *testdb.DB, opts users.LedgerOptions) *users.Ledger {
	t.Helper()
	opts.Backend = d.Open(t)
	if opts.Refresh == 0 {
		opts.Refresh = 200 * time.Millisecond
	}
	if opts.Flush == 0 {
		opts.Flush = 300 * time.Millisecond
	}
	if opts.OpTimeout == 0 {
		opts.OpTimeout = 2 * time.Second
	}
	l, err := users.NewLedger(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = l.Close(ctx)
	})
	return l
}

// within polls cond every 20ms and reports how long it took to hold, failing after limit.
func within(t testing.TB, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func found(l *users.Ledger, pw string) bool {
	_, ok := l.Lookup(trojan.HashPassword(pw))
	return ok
}

// TestLedgerUsersComeAndGo: a user added to the table works within a refresh; a deleted one is
// refused and its open connection cut well within 5 s; config passwords always work and are never cut.
func TestLedgerUsersComeAndGo(t *testing.T) {
	backends(t, func(t *testing.T, d *testdb.DB) {
		l := newLedger(t, d, users.LedgerOptions{Static: users.NewStatic([]string{"from-config"})})
		if !found(l, "from-config") {
			t.Fatal("config password not accepted")
		}
		if found(l, "pw-new") {
			t.Fatal("unknown user accepted")
		}
		d.AddUser(t, "new", "pw-new", -1)
		within(t, 2*time.Second, "new user accepted", func() bool { return found(l, "pw-new") })

		u, _ := l.Lookup(trojan.HashPassword("pw-new"))
		if strings.Contains(u.Name, string(u.Hash[:6])) {
			t.Errorf("user name %q shows part of the hash", u.Name)
		}
		var cut atomic.Bool
		s, ok := l.Begin(u, func() { cut.Store(true) })
		if !ok {
			t.Fatal("Begin refused a valid user")
		}
		defer s.End()
		cu, _ := l.Lookup(trojan.HashPassword("from-config"))
		var cfgCut atomic.Bool
		cs, ok := l.Begin(cu, func() { cfgCut.Store(true) })
		if !ok || cs.Up() != nil {
			t.Fatalf("config user: ok=%v, counter %v (want ok, not counted)", ok, cs.Up())
		}

		d.Exec(t, "DELETE FROM users WHERE username = 'new'")
		took := within(t, 5*time.Second, "deleted user's connection cut", cut.Load)
		t.Logf("deleted user cut after %v", took)
		if found(l, "pw-new") {
			t.Error("deleted user still accepted")
		}
		if _, ok := l.Begin(u, func() {}); ok {
			t.Error("Begin accepted a deleted user")
		}
		if cfgCut.Load() || !found(l, "from-config") {
			t.Error("config user affected")
		}
	})
}

// TestLedgerQuotaDuringConnection: download + upload reaching the quota cuts the open connection and
// refuses the user from then on (trojan-gfw: allowed while download + upload < quota).
func TestLedgerQuotaDuringConnection(t *testing.T) {
	backends(t, func(t *testing.T, d *testdb.DB) {
		d.AddUser(t, "q", "pw-q", 10_000)
		d.Exec(t, "UPDATE users SET download = 4000, upload = 1000 WHERE username = 'q'")
		d.AddUser(t, "free", "pw-free", -1)
		l := newLedger(t, d, users.LedgerOptions{})
		within(t, 2*time.Second, "user loaded", func() bool { return found(l, "pw-q") })
		u, _ := l.Lookup(trojan.HashPassword("pw-q"))
		var cut atomic.Bool
		s, ok := l.Begin(u, func() { cut.Store(true) })
		if !ok {
			t.Fatal("Begin refused")
		}
		defer s.End()
		s.Down().Add(3000)
		s.Up().Add(1999) // 9999 < 10000: still allowed
		time.Sleep(3 * users.Tick)
		if cut.Load() || !found(l, "pw-q") {
			t.Fatal("cut below quota")
		}
		s.Down().Add(1) // 10000: over
		took := within(t, 5*time.Second, "over-quota connection cut", cut.Load)
		t.Logf("over-quota user cut after %v", took)
		if found(l, "pw-q") {
			t.Error("over-quota user still accepted")
		}
		// Unlimited users are never cut, whatever they move.
		f, _ := l.Lookup(trojan.HashPassword("pw-free"))
		var fcut atomic.Bool
		fs, _ := l.Begin(f, func() { fcut.Store(true) })
		fs.Down().Add(1 << 40)
		time.Sleep(3 * users.Tick)
		fs.End()
		if fcut.Load() {
			t.Error("unlimited user cut")
		}
		// The operator raises the quota: the user works again.
		d.Exec(t, "UPDATE users SET quota = 1000000 WHERE username = 'q'")
		within(t, 3*time.Second, "user with raised quota accepted", func() bool { return found(l, "pw-q") })
	})
}

// TestLedgerCountsReachDatabase: counts from many sessions end up in download/upload exactly, and Close
// writes what the last interval counted.
func TestLedgerCountsReachDatabase(t *testing.T) {
	backends(t, func(t *testing.T, d *testdb.DB) {
		for i := range 5 {
			d.AddUser(t, "u"+strconv.Itoa(i), "pw-"+strconv.Itoa(i), -1)
		}
		l := newLedger(t, d, users.LedgerOptions{Flush: time.Hour}) // only Close flushes
		within(t, 2*time.Second, "users loaded", func() bool { return found(l, "pw-4") })
		want := map[string][2]int64{}
		for round := range 20 {
			for i := range 5 {
				pw := "pw-" + strconv.Itoa(i)
				u, _ := l.Lookup(trojan.HashPassword(pw))
				s, ok := l.Begin(u, func() {})
				if !ok {
					t.Fatal("Begin refused")
				}
				dn, up := int64(1000*round+i), int64(7*i+round)
				s.Down().Add(dn)
				s.Up().Add(up)
				s.End()
				w := want[pw]
				want[pw] = [2]int64{w[0] + dn, w[1] + up}
			}
		}
		if st := l.Stats(); st.Users != 5 {
			t.Errorf("Stats.Users = %d", st.Users)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := l.Close(ctx); err != nil {
			t.Fatal(err)
		}
		for pw, w := range want {
			if down, up := d.Usage(t, pw); down != w[0] || up != w[1] {
				t.Errorf("%s: %d/%d, want %d/%d", pw, down, up, w[0], w[1])
			}
		}
		if st := l.Stats(); st.PendingBytes != 0 || st.LastFlush.IsZero() {
			t.Errorf("after Close: %+v", st)
		}
	})
}

// TestLedgerJournalSurvivesOutageAndRestart: counts that cannot be written (the SQLite file is locked
// by another writer) stay in the journal at Close; the next start writes them, exactly once.
func TestLedgerJournalSurvivesOutageAndRestart(t *testing.T) {
	d := testdb.SQLite(t)
	d.AddUser(t, "a", "pw-a", -1)
	journal := filepath.Join(t.TempDir(), "journal.json")
	l := newLedger(t, d, users.LedgerOptions{Journal: journal, Flush: 200 * time.Millisecond, OpTimeout: 500 * time.Millisecond})
	within(t, 2*time.Second, "user loaded", func() bool { return found(l, "pw-a") })

	lock := lockSQLite(t, d)
	u, _ := l.Lookup(trojan.HashPassword("pw-a"))
	s, _ := l.Begin(u, func() {})
	s.Down().Add(12345)
	s.Up().Add(678)
	s.End()
	within(t, 3*time.Second, "journal written", func() bool { _, err := os.Stat(journal); return err == nil })
	if !found(l, "pw-a") {
		t.Error("a locked database made a known user unknown")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	err := l.Close(ctx)
	cancel()
	if err == nil || !strings.Contains(err.Error(), journal) {
		t.Fatalf("Close with the database locked: %v (want an error naming the journal)", err)
	}
	lock()
	if down, up := d.Usage(t, "pw-a"); down != 0 || up != 0 {
		t.Fatalf("counts written although the database was locked: %d/%d", down, up)
	}

	l2 := newLedger(t, d, users.LedgerOptions{Journal: journal})
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if down, up := d.Usage(t, "pw-a"); down != 12345 || up != 678 {
		t.Errorf("after restart: %d/%d, want 12345/678", down, up)
	}
	if _, err := os.Stat(journal); !os.IsNotExist(err) {
		t.Errorf("journal left behind after everything was written: %v", err)
	}
}

// TestLedgerRetriedBatchCountsOnce: a journal holding a batch that did reach the database (its commit
// succeeded but the answer was lost) is replayed without counting it twice.
func TestLedgerRetriedBatchCountsOnce(t *testing.T) {
	backends(t, func(t *testing.T, d *testdb.DB) {
		d.AddUser(t, "a", "pw-a", -1)
		h := trojan.HashPassword("pw-a")
		b := users.Batch{ID: "feedfacefeedfacefeedfacefeedface", Deltas: []users.Delta{{Hash: h, Download: 500, Upload: 50}}}
		db := d.Open(t)
		if err := db.Apply(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		db.Close()
		journal := filepath.Join(t.TempDir(), "journal.json")
		j := fmt.Sprintf(`{"version":1,"inflight":{"id":%q,"deltas":[{"hash":%q,"download":500,"upload":50}]},"pending":[{"hash":%q,"download":3,"upload":4}]}`,
			b.ID, string(h[:]), string(h[:]))
		if err := os.WriteFile(journal, []byte(j), 0o600); err != nil {
			t.Fatal(err)
		}
		l := newLedger(t, d, users.LedgerOptions{Journal: journal})
		if st := l.Stats(); st.PendingBytes != 557 {
			t.Errorf("pending from the journal = %d, want 557", st.PendingBytes)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := l.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if down, up := d.Usage(t, "pw-a"); down != 503 || up != 54 {
			t.Errorf("got %d/%d, want 503/54 (the replayed batch once, the pending counts once)", down, up)
		}
	})
}

// TestLedgerDamagedJournal: a journal that cannot be read stops the start instead of losing counts.
func TestLedgerDamagedJournal(t *testing.T) {
	d := testdb.SQLite(t)
	journal := filepath.Join(t.TempDir(), "journal.json")
	if err := os.WriteFile(journal, []byte(`{"version":1,"pending":[{"hash":"xyz"`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := users.NewLedger(users.LedgerOptions{Backend: d.Open(t), Journal: journal})
	if err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("NewLedger with a damaged journal: %v", err)
	}
}

// lockSQLite holds a write lock on d from another connection, so writes by the code under test fail
// as they would while a database server is down; the returned func releases it.
func lockSQLite(t testing.TB, d *testdb.DB) func() {
	t.Helper()
	ctx := context.Background()
	conn, err := d.Admin.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	var done atomic.Bool
	release := func() {
		if done.Swap(true) {
			return
		}
		_, _ = conn.ExecContext(ctx, "ROLLBACK")
		conn.Close()
	}
	t.Cleanup(release)
	return release
}

// BenchmarkLookup100k is the authentication path with 100 000 database users: known and unknown
// hashes, while the snapshot is being refreshed from the database.
//
//	go test -run '^$' -bench Lookup100k ./internal/users/
func BenchmarkLookup100k(b *testing.B) {
	d := testdb.SQLite(b)
	const n = 100_000
	tx, err := d.Admin.Begin()
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i += 500 {
		q := "INSERT INTO users (username, password, quota) VALUES "
		var args []any
		for j := i; j < i+500; j++ {
			if j > i {
				q += ","
			}
			q += "(?, ?, -1)"
			h := trojan.HashPassword("pw-" + strconv.Itoa(j))
			args = append(args, "u", string(h[:]))
		}
		if _, err := tx.Exec(q, args...); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	l := newLedger(b, d, users.LedgerOptions{Refresh: 500 * time.Millisecond})
	if st := l.Stats(); st.Users != n {
		b.Fatalf("loaded %d users", st.Users)
	}
	known := make([]trojan.Hash, 1024)
	unknown := make([]trojan.Hash, 1024)
	for i := range known {
		known[i] = trojan.HashPassword("pw-" + strconv.Itoa(i*97))
		unknown[i] = trojan.HashPassword("nope-" + strconv.Itoa(i))
	}
	for _, c := range []struct {
		name   string
		hashes []trojan.Hash
		want   bool
	}{{"known", known, true}, {"unknown", unknown, false}} {
		b.Run(c.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				if _, ok := l.Lookup(c.hashes[i&1023]); ok != c.want {
					b.Fatal("wrong answer")
				}
				i++
			}
		})
	}
}
