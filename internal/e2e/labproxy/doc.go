// Package labproxy holds whole-proxy tests that run the real client and server in process on a
// network-lab path (internal/netlab): the TCP Fast Open proof (kernel counters on every leg), hostile
// paths (drop-syn-data, strip-tfo, black-holed addresses), fail-fast connects and the TTFB
// benchmark. They live here, not in internal/tfo, so that tfo stays a leaf. It has no code of its own
// outside its tests.
package labproxy
