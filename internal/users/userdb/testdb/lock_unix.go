//go:build unix

package testdb

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Test binaries of several packages run at once, and one test stops the MySQL server. A lock file
// keeps them apart: every test using MySQL holds it shared, the outage test holds it exclusive.
var lockPath = filepath.Join(os.TempDir(), "fastrojan-test-mysql.lock")

func lockServer(t testing.TB, exclusive bool) {
	t.Helper()
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatalf("test lock: %v", err)
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		t.Fatalf("test lock: %v", err)
	}
	t.Cleanup(func() { f.Close() }) // closing releases the lock
}
