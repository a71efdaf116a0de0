// Package farm gives every TFO listener of a server farm the same cookie keys, rotating them on a
// schedule, without a coordinator: each node derives the keys from a shared secret and its own clock.
//
// # Why
//
// A TFO cookie is SipHash(key, client IP ‖ server IP) (DESIGN.md 3.3). Behind one address (ECMP,
// anycast, an L4 load balancer) a client learns a cookie from one node and presents it to whichever
// node its next flow lands on; with per-node keys that node refuses the SYN data and the connection
// pays the round trip TFO was meant to save. With the same key everywhere the cookie is good on every
// node.
//
// # Keys
//
// Time is cut into epochs of Interval: epoch e covers unix times [e·I, (e+1)·I). The key of epoch e is
// HKDF-SHA-256(secret, info "fastrojan tfo cookie key v1 interval=<I in seconds> epoch=<e>"), 16
// bytes. Nothing else goes in, so any node with the secret and a clock derives the same key; a node
// that restarts derives the keys it had.
//
// A listener holds two keys (TCP_FASTOPEN_KEY with 32 bytes, Linux ≥ 5.3): the primary makes the
// cookies it hands out and validates, the backup only validates (the kernel counts those in
// TCPFastOpenPassiveAltKey and hands the client a fresh primary cookie). At local time t in epoch e,
// with W = 2·Skew:
//
//	primary = K(e)
//	backup  = K(e+1)   if t is within W before the end of epoch e (announce the next key)
//	          K(e−1)   otherwise                                   (keep honouring the last one)
//
// # Why every node accepts every node's cookies
//
// Skew is how far any node's clock may be from true time, either way; two nodes' clocks then differ by
// at most D = 2·Skew = W. Take a cookie node i issues at its local time t_i, made with K(e_i), and
// node j looking at it at its local time t_j, at the same true moment, so |t_i − t_j| ≤ D.
//
//   - e_j = e_i: j's primary is K(e_i).
//   - e_j = e_i − 1 (i's clock is ahead and has crossed the boundary b = e_i·I, j's has not):
//     t_j ≥ t_i − D ≥ b − D = b − W, so j is in the last W of its epoch and its backup is
//     K(e_j+1) = K(e_i).
//   - e_j = e_i + 1 (j's clock is ahead): t_j < t_i + D < b' + D where b' = e_j·I, so j is less than
//     W into its epoch and, as long as W ≤ I − W (that is I ≥ 4·Skew, which New requires), not in its
//     last W: its backup is K(e_j−1) = K(e_i).
//   - |e_i − e_j| ≥ 2 cannot happen, since D < I.
//
// So a cookie is accepted everywhere the moment it is issued, before, during and after a boundary, in
// both directions of skew. It stays good while the clients keep it: K(e) is accepted by node j from
// local time e·I − W until (e+2)·I − W, so a cookie issued at any moment of epoch e is accepted by
// every node for at least I − W − D = Interval − 4·Skew afterwards (23 h 56 min with the defaults of
// 24 h and 60 s), and at most about two intervals. A cookie older than that is refused once: the SYN
// data is sent again after the handshake (one round trip lost, nothing else), the server hands out a
// current cookie in the same exchange, and the client's next connection uses it. Cookies held through
// longer than that are not meant to survive a rotation, by design: a key that leaks stops working
// within two intervals.
//
// TestRotationScheduleExhaustive checks this argument at every instant of a fine grid around a
// boundary for many skews, and shows it fails once clocks differ by more than 2·Skew.
//
// # In the running process
//
// A Rotator sets the keys of a set of listeners and keeps them right: it wakes at each change of the
// schedule (and at least once a minute, so a stepped wall clock is noticed), and SetFarm swaps the
// secret (SIGHUP) without touching connections. Setting keys never affects established connections or
// connections in the accept queue; it only changes which cookies new SYNs are checked against.
//
// Without a secret nothing is set: each listener uses its network namespace's key (random per
// namespace unless net.ipv4.tcp_fastopen_key is set), which is fine for one server and wrong for a
// farm; FromConfig returns ErrNoSecret so that doctor can say so.
//
// # The sysctl
//
// Other TFO listeners on the same host (nginx, another proxy) can share the keys through the
// namespace's net.ipv4.tcp_fastopen_key, which holds "pppppppp-pppppppp-pppppppp-pppppppp" (and
// ",bbbbbbbb-…" for a backup): four 32-bit hexadecimal words per key, where word n is bytes 4n..4n+3
// of the key read as a little-endian number (the kernel stores each word with cpu_to_le32). So the key
// bytes 00 11 22 33 44 … are written "33221100-…". KeySet.SysctlValue produces that form and
// ParseSysctl reads it; TestFarmSysctlMatchesSetsockopt proves in a lab that a listener keyed by the
// sysctl and one keyed by SetKeys accept each other's cookies. The sysctl value changes at every
// rotation, so it has to be written again each time (see `fastrojan keys --sysctl`).
package farm
