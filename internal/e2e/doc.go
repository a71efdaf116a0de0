// Package e2e holds fastrojan's end-to-end tests: the real binary, started as a user would start it,
// against loopback origins and against trojan-gfw (Debian's trojan package) as a peer in both
// directions. It has no code of its own outside its tests.
package e2e
