// Package testdb gives tests a real user database: a fresh MySQL/MariaDB database on the server that
// FASTROJAN_TEST_MYSQL_DSN names, or a fresh SQLite file. Tests that need MySQL skip, saying what to
// install and set, when the variable is missing; CI (.ci/run) installs MariaDB and sets it.
package testdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/fastrojan/fastrojan/internal/trojan"
	"github.com/fastrojan/fastrojan/internal/users/userdb"
)

// Environment variables read by the helpers.
const (
	EnvDSN   = "FASTROJAN_TEST_MYSQL_DSN"   // user:pass@tcp(host:port)/ with rights on fastrojan_test_* databases
	EnvStop  = "FASTROJAN_TEST_MYSQL_STOP"  // shell command stopping the server
	EnvStart = "FASTROJAN_TEST_MYSQL_START" // shell command starting it and waiting until it answers
)

const skipMsg = "needs a MySQL/MariaDB server: apt-get install mariadb-server, then eval \"$(scripts/mariadb setup)\" " +
	"(sets " + EnvDSN + ", " + EnvStop + " and " + EnvStart + "); .ci/run does this"

// holdsExclusive is set while this process holds the server lock exclusively (Outage).
var holdsExclusive atomic.Bool

// DB is one test database.
type DB struct {
	Kind   string             // "mysql" or "sqlite"
	MySQL  userdb.MySQLConfig // Kind "mysql": how to reach it
	SQLite string             // Kind "sqlite": the file
	Admin  *sql.DB            // a handle for the test to manage users, outside the code under test
}

// MySQL creates a fresh, empty database on the test server and drops it at cleanup. It skips the test
// when EnvDSN is unset. A test that also calls Outage must call it first.
func MySQL(t testing.TB) *DB {
	t.Helper()
	dsn := os.Getenv(EnvDSN)
	if dsn == "" {
		t.Skip(skipMsg)
	}
	if !holdsExclusive.Load() {
		lockServer(t, false)
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("%s: %v", EnvDSN, err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "fastrojan_test_" + hex.EncodeToString(b[:])
	root, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if _, err := root.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("create database on %s (%s): %v", cfg.Addr, EnvDSN, err)
	}
	t.Cleanup(func() {
		r, err := sql.Open("mysql", cfg.FormatDSN())
		if err != nil {
			return
		}
		defer r.Close()
		_, _ = r.Exec("DROP DATABASE IF EXISTS " + name)
	})
	cfg.DBName = name
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	d := &DB{Kind: "mysql", Admin: admin, MySQL: userdb.MySQLConfig{
		Addr: cfg.Addr, Database: name, Username: cfg.User, Password: cfg.Passwd,
	}}
	d.exec(t, `CREATE TABLE users (
    id INT UNSIGNED NOT NULL AUTO_INCREMENT,
    username VARCHAR(64) NOT NULL,
    password CHAR(56) NOT NULL,
    quota BIGINT NOT NULL DEFAULT 0,
    download BIGINT UNSIGNED NOT NULL DEFAULT 0,
    upload BIGINT UNSIGNED NOT NULL DEFAULT 0,
    PRIMARY KEY (id),
    INDEX (password)
)`)
	return d
}

// SQLite creates a database file in a temporary directory, with the users table created the way the
// server creates it.
func SQLite(t testing.TB) *DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users.db")
	db, err := userdb.OpenSQLite(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &DB{Kind: "sqlite", SQLite: path, Admin: db.SQL()}
}

// Open opens the code under test's backend on d.
func (d *DB) Open(t testing.TB) *userdb.DB {
	t.Helper()
	var db *userdb.DB
	var err error
	if d.Kind == "mysql" {
		db, err = userdb.OpenMySQL(d.MySQL, nil)
	} else {
		db, err = userdb.OpenSQLite(d.SQLite, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func (d *DB) exec(t testing.TB, q string, args ...any) sql.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := d.Admin.ExecContext(ctx, q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return res
}

// Exec runs a statement as the database's administrator would.
func (d *DB) Exec(t testing.TB, q string, args ...any) { d.exec(t, q, args...) }

// AddUser inserts a user the way a panel does: the SHA-224 hex of the password.
func (d *DB) AddUser(t testing.TB, name, password string, quota int64) {
	t.Helper()
	h := trojan.HashPassword(password)
	d.exec(t, "INSERT INTO users (username, password, quota) VALUES (?, ?, ?)", name, string(h[:]), quota)
}

// Usage returns a user's download and upload columns.
func (d *DB) Usage(t testing.TB, password string) (down, up int64) {
	t.Helper()
	h := trojan.HashPassword(password)
	if err := d.Admin.QueryRow("SELECT download, upload FROM users WHERE password = ?", string(h[:])).Scan(&down, &up); err != nil {
		t.Fatalf("usage of %s: %v", name(password), err)
	}
	return down, up
}

func name(pw string) string { return fmt.Sprintf("user with password of %d bytes", len(pw)) }

// Outage returns commands that stop and start the MySQL server (EnvStop, EnvStart); it skips the test
// when they are not set. Start is registered at cleanup too, so a failing test leaves the server up.
// It waits until no other test process uses the server, and keeps them waiting until cleanup; call it
// before MySQL.
func Outage(t testing.TB) (stop, start func()) {
	t.Helper()
	stopCmd, startCmd := os.Getenv(EnvStop), os.Getenv(EnvStart)
	if stopCmd == "" || startCmd == "" || os.Getenv(EnvDSN) == "" {
		t.Skip(skipMsg)
	}
	lockServer(t, true)
	holdsExclusive.Store(true)
	t.Cleanup(func() { holdsExclusive.Store(false) })
	run := func(c string) {
		out, err := exec.Command("sh", "-c", c).CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v\n%s", c, err, out)
		}
	}
	stopped := false
	t.Cleanup(func() {
		if stopped {
			run(startCmd)
		}
	})
	return func() { stopped = true; run(stopCmd) }, func() { run(startCmd); stopped = false }
}
