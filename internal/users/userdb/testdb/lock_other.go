//go:build !unix

package testdb

import "testing"

// lockServer is a no-op where flock does not exist; run the MySQL tests one package at a time there
// (go test -p 1).
func lockServer(t testing.TB, exclusive bool) {}
