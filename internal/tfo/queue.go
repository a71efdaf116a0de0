package tfo

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// The server's TFO queue (DESIGN.md 3.10). TCP_FASTOPEN on a listener bounds how many TFO children
// may wait for the client's final ACK at once; each holds the work done for its SYN data before the
// handshake completes (RFC 7413 §5.1). The cookie binds the client's address, so spoofed SYNs cannot
// fill the queue and forged cookies create no child; what fills it is real clients, about
// new-connections-per-second × RTT of them. When it is full the kernel refuses the SYN data
// (TcpExt TCPFastOpenListenOverflow) and the connection costs a full extra round trip, silently.
//
// trojan-gfw's fast_open_qlen (default 20) is therefore taken as a floor: the queue follows the
// listen backlog (net.core.somaxconn, what Go's listen uses), as other TFO servers do, unless the
// operator asks for exactly the configured value.

// QueueLen returns the TFO queue length a server listener asks for: configured (fast_open_qlen; < 1
// means DefaultQueueLen) raised to backlog, or configured itself when exact. The kernel caps the
// result at net.core.somaxconn.
func QueueLen(configured int, exact bool, backlog int) int {
	if configured < 1 {
		configured = DefaultQueueLen
	}
	if exact {
		return configured
	}
	return max(configured, backlog)
}

// QueueInfo is what the kernel says about a listener's queues.
type QueueInfo struct {
	// TFOQueue is the TFO queue limit in force (getsockopt TCP_FASTOPEN): the value asked for,
	// capped at net.core.somaxconn; 0 means TFO is off on the listener.
	TFOQueue int
	// Backlog is the accept queue limit in force (sk_max_ack_backlog); Accept is how many
	// connections wait in it now (sk_ack_backlog).
	Backlog, Accept int
}

// Counters a listener's health is judged by (TcpExt of /proc/net/netstat).
const (
	CounterTFOListenOverflow = "TCPFastOpenListenOverflow" // SYN data refused: the TFO queue was full
	CounterListenOverflows   = "ListenOverflows"           // the accept queue was full
	CounterListenDrops       = "ListenDrops"               // SYNs (and final ACKs) dropped by a listener
	CounterSyncookiesSent    = "SyncookiesSent"            // SYNs answered with a SYN cookie: no TFO for them
)

// ListenCounters lists the TcpExt counters, next to the TCPFastOpen* ones, that tell whether a
// listener's queues overflow.
func ListenCounters() []string {
	return []string{CounterListenOverflows, CounterListenDrops, CounterSyncookiesSent}
}

// QueueRates are the listener counters' growth over the last interval of a QueueWatch.
type QueueRates struct {
	Interval time.Duration
	// Per second over the interval.
	TFOListenOverflow, ListenOverflows, ListenDrops, SyncookiesSent float64
}

// QueueWatch reads the TcpExt counters every Interval and logs one warning per interval in which
// SYN data was refused because the TFO queue was full, or the accept queue overflowed, naming the
// fix. The counters are the network namespace's (every listener in it adds to them).
type QueueWatch struct {
	Interval time.Duration // default 30s
	// Fix is the advice of the warning, e.g. the config line and sysctl to change.
	Fix    string
	Limit  int                               // the queue limit in force, for the warning
	Read   func() (map[string]uint64, error) // default ReadTcpExt
	Logger *slog.Logger                      // default slog.Default()

	mu    sync.Mutex
	rates QueueRates
}

// Rates returns the rates of the last complete interval.
func (w *QueueWatch) Rates() QueueRates {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rates
}

// Run watches until ctx ends.
func (w *QueueWatch) Run(ctx context.Context) {
	interval := w.Interval
	if interval <= 0 {
		interval = 30 * time.Second
	}
	read := w.Read
	if read == nil {
		read = ReadTcpExt
	}
	log := w.Logger
	if log == nil {
		log = slog.Default()
	}
	prev, err := read()
	if err != nil {
		log.Debug("TFO queue watch: counters not readable", "err", err)
		return
	}
	last := time.Now()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cur, err := read()
		if err != nil {
			continue
		}
		now := time.Now()
		secs := now.Sub(last).Seconds()
		d := func(k string) uint64 {
			if cur[k] < prev[k] {
				return 0
			}
			return cur[k] - prev[k]
		}
		over, lover, drops, cookies := d(CounterTFOListenOverflow), d(CounterListenOverflows), d(CounterListenDrops), d(CounterSyncookiesSent)
		w.mu.Lock()
		w.rates = QueueRates{Interval: now.Sub(last), TFOListenOverflow: float64(over) / secs,
			ListenOverflows: float64(lover) / secs, ListenDrops: float64(drops) / secs, SyncookiesSent: float64(cookies) / secs}
		w.mu.Unlock()
		prev, last = cur, now
		if over > 0 {
			log.Warn("TFO queue full: the kernel refused SYN data, each refusal costs that client a round trip (TcpExt TCPFastOpenListenOverflow)",
				"refused", over, "per_second", fmt.Sprintf("%.1f", float64(over)/secs), "interval", interval,
				"qlen", w.Limit, "fix", w.Fix)
		}
		if lover > 0 || cookies > 0 {
			log.Warn("accept queue overflowed: connections dropped or answered with SYN cookies (no TFO for them) (TcpExt ListenOverflows, SyncookiesSent)",
				"overflows", lover, "syncookies", cookies, "drops", drops, "interval", interval,
				"fix", "raise net.core.somaxconn (sysctl -w net.core.somaxconn=65535) and net.ipv4.tcp_max_syn_backlog; check fastrojan.max_conns")
		}
	}
}

// QueueFix is the advice for a full TFO queue whose limit in force is limit: the config line, and
// the sysctl that bounds the queue (net.core.somaxconn, 0 if unknown).
func QueueFix(limit, somaxconn int, exact bool) string {
	want := max(4*limit, 1024)
	fix := fmt.Sprintf(`in config.json: "tcp": {"fast_open_qlen": %d}`, want)
	if exact {
		fix += ` (or drop "exact_qlen": true from "fastrojan": {"tfo": ...}, so that the queue follows the listen backlog)`
	}
	switch {
	case somaxconn > 0 && want > somaxconn:
		fix += fmt.Sprintf("; and sysctl -w net.core.somaxconn=%d (the kernel caps the queue at net.core.somaxconn, now %d)", want, somaxconn)
	case somaxconn > 0:
		fix += fmt.Sprintf(" (net.core.somaxconn %d already allows it)", somaxconn)
	}
	return fix
}
