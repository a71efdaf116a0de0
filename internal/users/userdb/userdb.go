// Package userdb is the database behind users.Ledger: trojan-gfw's `users` table on MySQL/MariaDB, or
// the same schema in an embedded SQLite file (pure Go, so the binary stays static).
//
// The `users` table is left exactly as trojan-gfw defines it, so existing panels keep working; only
// the columns password, quota, download and upload are read or written, and rows are matched by
// password (the SHA-224 hex), as trojan-gfw does. Our own state lives in a table of our own,
// fastrojan_batches, created on first use: the IDs of the batches already applied, which make a
// retried write count once.
package userdb

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/fastrojan/fastrojan/internal/trojan"
	"github.com/fastrojan/fastrojan/internal/users"
)

// BatchRetention is how long applied batch IDs are kept. A batch retried later than this would be
// counted twice; retries happen within seconds to hours.
const BatchRetention = 30 * 24 * time.Hour

type dialect int

const (
	dialectMySQL dialect = iota
	dialectSQLite
)

// DB is a users.Backend over database/sql. It is safe for concurrent use.
type DB struct {
	db      *sql.DB
	dialect dialect
	log     *slog.Logger

	mu     sync.Mutex
	schema bool // our tables exist
	badRow bool // a row with an unusable password was reported once
}

var _ users.Backend = (*DB)(nil)

// MySQLConfig is trojan-gfw's "mysql" object, in Go.
type MySQLConfig struct {
	Addr     string // host:port
	Database string
	Username string
	Password string
	// CA, Cert and Key are PEM files. CA set: TLS, verifying the server against it. Cert and Key set:
	// TLS with this client certificate (verifying the server against the system roots unless CA is set).
	CA, Cert, Key string
}

// OpenMySQL returns a DB for a MySQL or MariaDB server. It does not connect yet: a database that is
// down at start is retried by the Ledger like any later outage.
func OpenMySQL(c MySQLConfig, log *slog.Logger) (*DB, error) {
	mc := mysql.NewConfig()
	mc.Net = "tcp"
	mc.Addr = c.Addr
	mc.DBName = c.Database
	mc.User = c.Username
	mc.Passwd = c.Password
	mc.Timeout = 5 * time.Second
	mc.ReadTimeout = 15 * time.Second
	mc.WriteTimeout = 15 * time.Second
	if c.CA != "" || c.Cert != "" {
		tc, err := mysqlTLS(c)
		if err != nil {
			return nil, err
		}
		mc.TLS = tc
	}
	setDriverLogger(log)
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("mysql %s: %w", c.Addr, err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(2)
	db.SetConnMaxIdleTime(time.Minute)
	return newDB(db, dialectMySQL, log), nil
}

func mysqlTLS(c MySQLConfig) (*tls.Config, error) {
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return nil, fmt.Errorf("mysql address %q: %w", c.Addr, err)
	}
	tc := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if c.CA != "" {
		pem, err := os.ReadFile(c.CA)
		if err != nil {
			return nil, fmt.Errorf("mysql ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mysql ca %s: no PEM certificate in it", c.CA)
		}
		tc.RootCAs = pool
	}
	if c.Cert != "" || c.Key != "" {
		cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("mysql client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// OpenSQLite opens (creating if needed) an SQLite database file with trojan-gfw's users table.
func OpenSQLite(path string, log *slog.Logger) (*DB, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	db.SetMaxOpenConns(2)
	d := newDB(db, dialectSQLite, log)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.ensureSchema(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	return d, nil
}

func newDB(db *sql.DB, d dialect, log *slog.Logger) *DB {
	if log == nil {
		log = slog.Default()
	}
	return &DB{db: db, dialect: d, log: log}
}

// SQL is the database handle, for tools and tests that manage users.
func (d *DB) SQL() *sql.DB { return d.db }

// Close closes the database handle.
func (d *DB) Close() error { return d.db.Close() }

// trojan-gfw's users table (docs/authenticator.md) in each dialect, and our batch table.
var (
	usersMySQL = `CREATE TABLE IF NOT EXISTS users (
    id INT UNSIGNED NOT NULL AUTO_INCREMENT,
    username VARCHAR(64) NOT NULL,
    password CHAR(56) NOT NULL,
    quota BIGINT NOT NULL DEFAULT 0,
    download BIGINT UNSIGNED NOT NULL DEFAULT 0,
    upload BIGINT UNSIGNED NOT NULL DEFAULT 0,
    PRIMARY KEY (id),
    INDEX (password)
)`
	usersSQLite = `CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username VARCHAR(64) NOT NULL,
    password CHAR(56) NOT NULL,
    quota BIGINT NOT NULL DEFAULT 0,
    download BIGINT NOT NULL DEFAULT 0 CHECK (download >= 0),
    upload BIGINT NOT NULL DEFAULT 0 CHECK (upload >= 0)
)`
	batchesDDL = `CREATE TABLE IF NOT EXISTS fastrojan_batches (
    id CHAR(32) NOT NULL PRIMARY KEY,
    applied_at BIGINT NOT NULL
)`
)

// ensureSchema creates the users table when it is missing (with trojan-gfw's definition) and our
// batch table. It runs once per DB, on the first call that reaches the database.
func (d *DB) ensureSchema(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.schema {
		return nil
	}
	stmts := []string{usersMySQL, batchesDDL}
	if d.dialect == dialectSQLite {
		stmts = []string{usersSQLite, "CREATE INDEX IF NOT EXISTS users_password ON users (password)", batchesDDL}
	}
	for _, s := range stmts {
		if _, err := d.db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("create tables: %w", err)
		}
	}
	d.schema = true
	return nil
}

// Users reads every row of the users table. Rows whose password is not 56 hex digits are skipped
// (reported once, without the value).
func (d *DB) Users(ctx context.Context) ([]users.Record, error) {
	if err := d.ensureSchema(ctx); err != nil {
		return nil, err
	}
	rows, err := d.db.QueryContext(ctx, "SELECT password, quota, download, upload FROM users")
	if err != nil {
		return nil, fmt.Errorf("read users: %w", err)
	}
	defer rows.Close()
	var out []users.Record
	bad := 0
	for rows.Next() {
		var pw sql.NullString
		var quota, down, up sql.NullInt64
		if err := rows.Scan(&pw, &quota, &down, &up); err != nil {
			return nil, fmt.Errorf("read users: %w", err)
		}
		h, err := trojan.ParseHash(pw.String)
		if err != nil {
			bad++
			continue
		}
		out = append(out, users.Record{Hash: h, Quota: quota.Int64, Download: down.Int64, Upload: up.Int64})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read users: %w", err)
	}
	if bad > 0 {
		d.mu.Lock()
		first := !d.badRow
		d.badRow = true
		d.mu.Unlock()
		if first {
			d.log.Warn("users: rows whose password is not a SHA-224 hex digest are ignored", "rows", bad)
		}
	}
	return out, nil
}

// Apply writes a batch in one transaction together with its ID; see users.Backend.
func (d *DB) Apply(ctx context.Context, b users.Batch) error {
	if len(b.ID) == 0 || len(b.ID) > 32 {
		return fmt.Errorf("batch id %q: want 1..32 characters", b.ID)
	}
	if err := d.ensureSchema(ctx); err != nil {
		return err
	}
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback() // no-op after Commit
	insert := "INSERT IGNORE INTO fastrojan_batches (id, applied_at) VALUES (?, ?)"
	if d.dialect == dialectSQLite {
		insert = "INSERT OR IGNORE INTO fastrojan_batches (id, applied_at) VALUES (?, ?)"
	}
	res, err := tx.ExecContext(ctx, insert, b.ID, time.Now().Unix())
	if err != nil {
		return fmt.Errorf("record batch: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("record batch: %w", err)
	} else if n == 0 {
		return nil // applied before: the earlier attempt committed
	}
	if err := d.update(ctx, tx, b.Deltas); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if rand.IntN(64) == 0 {
		d.prune(ctx)
	}
	return nil
}

// chunk is how many rows one UPDATE statement changes.
const chunk = 200

// update adds the deltas, chunk rows per statement: a join against a derived table of
// (password, download, upload) rows, which both MySQL and SQLite (UPDATE ... FROM) understand.
func (d *DB) update(ctx context.Context, tx *sql.Tx, ds []users.Delta) error {
	for len(ds) > 0 {
		n := min(len(ds), chunk)
		part := ds[:n]
		ds = ds[n:]
		args := make([]any, 0, 3*n)
		q := make([]byte, 0, 64*n+200)
		for i, dl := range part {
			if i == 0 {
				q = append(q, "SELECT ? AS p, ? AS d, ? AS u"...)
			} else {
				q = append(q, " UNION ALL SELECT ?, ?, ?"...)
			}
			args = append(args, string(dl.Hash[:]), dl.Download, dl.Upload)
		}
		var stmt string
		if d.dialect == dialectMySQL {
			stmt = "UPDATE users JOIN (" + string(q) + ") AS t ON users.password = t.p " +
				"SET users.download = users.download + t.d, users.upload = users.upload + t.u"
		} else {
			stmt = "UPDATE users SET download = download + t.d, upload = upload + t.u FROM (" +
				string(q) + ") AS t WHERE users.password = t.p"
		}
		if _, err := tx.ExecContext(ctx, stmt, args...); err != nil {
			return fmt.Errorf("add counts: %w", err)
		}
	}
	return nil
}

func (d *DB) prune(ctx context.Context) {
	cutoff := time.Now().Add(-BatchRetention).Unix()
	if _, err := d.db.ExecContext(ctx, "DELETE FROM fastrojan_batches WHERE applied_at < ?", cutoff); err != nil {
		d.log.Warn("users: cannot prune old batch ids", "err", err)
	}
}

var driverLogOnce sync.Once

// setDriverLogger sends the MySQL driver's own messages (such as "closing bad idle connection")
// through slog instead of the standard logger. The driver's logger is global: the first one wins.
func setDriverLogger(log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	driverLogOnce.Do(func() { _ = mysql.SetLogger(driverLog{log}) })
}

type driverLog struct{ log *slog.Logger }

func (d driverLog) Print(v ...any) { d.log.Warn("users: mysql driver: " + fmt.Sprint(v...)) }
