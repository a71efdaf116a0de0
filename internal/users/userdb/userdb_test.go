package userdb_test

import (
	"context"
	"fmt"
	"strconv"
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

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestUsersReadsTrojanGFWTable(t *testing.T) {
	backends(t, func(t *testing.T, d *testdb.DB) {
		d.AddUser(t, "alice", "pw-alice", -1)
		d.AddUser(t, "bob", "pw-bob", 1000)
		d.Exec(t, "UPDATE users SET download = 7, upload = 9 WHERE username = 'bob'")
		d.Exec(t, "INSERT INTO users (username, password, quota) VALUES ('broken', 'not-a-hash', -1)")
		h := trojan.HashPassword("pw-carol")
		d.Exec(t, "INSERT INTO users (username, password, quota) VALUES ('carol', ?, 5)", upper(string(h[:])))
		db := d.Open(t)
		defer db.Close()
		recs, err := db.Users(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		got := map[trojan.Hash]users.Record{}
		for _, r := range recs {
			got[r.Hash] = r
		}
		if len(recs) != 3 {
			t.Fatalf("got %d records, want 3 (the row with a broken password skipped)", len(recs))
		}
		if r := got[trojan.HashPassword("pw-alice")]; r.Quota != -1 || r.Download != 0 || r.Upload != 0 {
			t.Errorf("alice: %+v", r)
		}
		if r := got[trojan.HashPassword("pw-bob")]; r.Quota != 1000 || r.Download != 7 || r.Upload != 9 {
			t.Errorf("bob: %+v", r)
		}
		if r, ok := got[h]; !ok || r.Quota != 5 {
			t.Errorf("carol (hash stored in upper case) not read: %+v", r)
		}
	})
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'f' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// TestApplyIdempotent: a batch applied twice (an outcome that was unknown, retried) counts once; the
// users table keeps trojan-gfw's columns and nothing else.
func TestApplyIdempotent(t *testing.T) {
	backends(t, func(t *testing.T, d *testdb.DB) {
		d.AddUser(t, "alice", "pw-alice", -1)
		d.AddUser(t, "bob", "pw-bob", -1)
		db := d.Open(t)
		defer db.Close()
		b := users.Batch{ID: "0123456789abcdef0123456789abcdef", Deltas: []users.Delta{
			{Hash: trojan.HashPassword("pw-alice"), Download: 100, Upload: 10},
			{Hash: trojan.HashPassword("pw-bob"), Download: 5, Upload: 0},
			{Hash: trojan.HashPassword("pw-deleted"), Download: 1, Upload: 1},
		}}
		for range 3 {
			if err := db.Apply(ctx(t), b); err != nil {
				t.Fatal(err)
			}
		}
		if down, up := d.Usage(t, "pw-alice"); down != 100 || up != 10 {
			t.Errorf("alice after one batch applied three times: %d/%d, want 100/10", down, up)
		}
		b2 := users.Batch{ID: "another", Deltas: []users.Delta{{Hash: trojan.HashPassword("pw-alice"), Download: 1, Upload: 2}}}
		if err := db.Apply(ctx(t), b2); err != nil {
			t.Fatal(err)
		}
		if down, up := d.Usage(t, "pw-alice"); down != 101 || up != 12 {
			t.Errorf("alice after a second batch: %d/%d, want 101/12", down, up)
		}
		if down, up := d.Usage(t, "pw-bob"); down != 5 || up != 0 {
			t.Errorf("bob: %d/%d, want 5/0", down, up)
		}
		rows, err := d.Admin.Query("SELECT * FROM users LIMIT 1")
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		rows.Close()
		if fmt.Sprint(cols) != "[id username password quota download upload]" {
			t.Errorf("users table columns changed: %v", cols)
		}
	})
}

// TestApplyManyRows: a batch larger than one statement's chunk adds every row exactly.
func TestApplyManyRows(t *testing.T) {
	backends(t, func(t *testing.T, d *testdb.DB) {
		const n = 450
		var ds []users.Delta
		for i := range n {
			pw := "pw-" + strconv.Itoa(i)
			d.AddUser(t, "u"+strconv.Itoa(i), pw, -1)
			ds = append(ds, users.Delta{Hash: trojan.HashPassword(pw), Download: int64(i), Upload: int64(2 * i)})
		}
		db := d.Open(t)
		defer db.Close()
		if err := db.Apply(ctx(t), users.Batch{ID: "many", Deltas: ds}); err != nil {
			t.Fatal(err)
		}
		var sd, su int64
		if err := d.Admin.QueryRow("SELECT SUM(download), SUM(upload) FROM users").Scan(&sd, &su); err != nil {
			t.Fatal(err)
		}
		want := int64(n * (n - 1) / 2)
		if sd != want || su != 2*want {
			t.Errorf("sums %d/%d, want %d/%d", sd, su, want, 2*want)
		}
	})
}

// BenchmarkFlush100k measures flush throughput: one batch of 100 000 rows (every user active) into a
// table of 100 000 users. Reported as rows/s.
//
//	go test -run '^$' -bench Flush100k -benchtime 3x ./internal/users/userdb/
func BenchmarkFlush100k(b *testing.B) {
	for _, kind := range []string{"sqlite", "mysql"} {
		b.Run(kind, func(b *testing.B) {
			var d *testdb.DB
			if kind == "sqlite" {
				d = testdb.SQLite(b)
			} else {
				d = testdb.MySQL(b)
			}
			const n = 100_000
			ds := fill(b, d, n)
			db := d.Open(b)
			defer db.Close()
			b.ResetTimer()
			for i := range b.N {
				if err := db.Apply(ctx(b), users.Batch{ID: "bench" + strconv.Itoa(i), Deltas: ds}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// fill inserts n users in bulk and returns one delta per user.
func fill(tb testing.TB, d *testdb.DB, n int) []users.Delta {
	ds := make([]users.Delta, 0, n)
	tx, err := d.Admin.Begin()
	if err != nil {
		tb.Fatal(err)
	}
	const per = 500
	for i := 0; i < n; i += per {
		q := "INSERT INTO users (username, password, quota) VALUES "
		var args []any
		for j := i; j < min(n, i+per); j++ {
			if j > i {
				q += ","
			}
			q += "(?, ?, -1)"
			h := trojan.HashPassword("pw-" + strconv.Itoa(j))
			args = append(args, "u"+strconv.Itoa(j), string(h[:]))
			ds = append(ds, users.Delta{Hash: h, Download: 1000, Upload: 100})
		}
		if _, err := tx.Exec(q, args...); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
	return ds
}

// BenchmarkRefresh100k measures one read of a 100 000-user table (what every refresh costs).
//
//	go test -run '^$' -bench Refresh100k -benchtime 5x ./internal/users/userdb/
func BenchmarkRefresh100k(b *testing.B) {
	for _, kind := range []string{"sqlite", "mysql"} {
		b.Run(kind, func(b *testing.B) {
			var d *testdb.DB
			if kind == "sqlite" {
				d = testdb.SQLite(b)
			} else {
				d = testdb.MySQL(b)
			}
			fill(b, d, 100_000)
			db := d.Open(b)
			defer db.Close()
			b.ResetTimer()
			for range b.N {
				recs, err := db.Users(ctx(b))
				if err != nil || len(recs) != 100_000 {
					b.Fatal(len(recs), err)
				}
			}
		})
	}
}
