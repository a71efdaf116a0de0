package server

import (
	"context"
	"log/slog"
	"net"

	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/metrics"
	"github.com/fastrojan/fastrojan/internal/service"
	"github.com/fastrojan/fastrojan/internal/tfo"
)

// logQueue says at start which TFO queue and accept backlog the kernel put in force on the server's
// listener, and warns when the kernel capped the queue below what was asked.
func logQueue(ln net.Listener, configured int, exact bool, asked int, log *slog.Logger) {
	q, err := tfo.ListenerQueue(ln)
	if err != nil {
		log.Info("TCP Fast Open on the listener", "qlen", asked, "fast_open_qlen", configured, "exact_qlen", exact)
		return
	}
	log.Info("TCP Fast Open on the listener", "qlen", q.TFOQueue, "backlog", q.Backlog, "fast_open_qlen", configured, "exact_qlen", exact)
	if q.TFOQueue > 0 && q.TFOQueue < asked {
		log.Warn("the kernel capped the TFO queue at net.core.somaxconn", "asked", asked, "qlen", q.TFOQueue,
			"fix", tfo.QueueFix(q.TFOQueue, tfo.ListenBacklog(), exact))
	}
}

// queueWatchPart watches the server listener's queues until stopped: one warning per interval while
// the kernel refuses SYN data for a full TFO queue (or the accept queue overflows), with the fix;
// and, with metrics, the queue limits in force and the overflow rates.
func queueWatchPart(cfg *config.Config, ln net.Listener, log *slog.Logger, m *metrics.Metrics) service.Part {
	q, _ := tfo.ListenerQueue(ln)
	_, exact := cfg.TFOQueue()
	w := &tfo.QueueWatch{Limit: q.TFOQueue, Fix: tfo.QueueFix(q.TFOQueue, tfo.ListenBacklog(), exact), Logger: log}
	if m != nil {
		gauge := func(name, help string, f func() float64) { _ = m.GaugeFunc(name, help, f) }
		info := func() tfo.QueueInfo { q, _ := tfo.ListenerQueue(ln); return q }
		gauge("fastrojan_tfo_queue_limit", "TFO queue limit in force on the server's listener (getsockopt TCP_FASTOPEN): "+
			"TFO handshakes that may be pending at once before the kernel refuses SYN data.", func() float64 { return float64(info().TFOQueue) })
		gauge("fastrojan_listen_backlog", "Accept queue limit in force on the server's listener (sk_max_ack_backlog).",
			func() float64 { return float64(info().Backlog) })
		gauge("fastrojan_listen_accept_queue", "Connections waiting in the server listener's accept queue now.",
			func() float64 { return float64(info().Accept) })
		gauge("fastrojan_tfo_listen_overflow_per_second", "SYN data refused per second because the TFO queue was full "+
			"(TcpExt TCPFastOpenListenOverflow over the last watch interval).", func() float64 { return w.Rates().TFOListenOverflow })
		gauge("fastrojan_listen_overflows_per_second", "Accept queue overflows per second (TcpExt ListenOverflows over the last watch interval).",
			func() float64 { return w.Rates().ListenOverflows })
		gauge("fastrojan_syncookies_sent_per_second", "SYNs answered with a SYN cookie per second, which get no TFO "+
			"(TcpExt SyncookiesSent over the last watch interval).", func() float64 { return w.Rates().SyncookiesSent })
	}
	ctx, cancel := context.WithCancel(context.Background())
	return service.Part{
		Name: "TFO queue watch",
		Run:  func() error { w.Run(ctx); return nil },
		Stop: func(context.Context) error { cancel(); return nil },
	}
}
