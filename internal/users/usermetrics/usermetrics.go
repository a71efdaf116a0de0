// Package usermetrics exports a users.Ledger to Prometheus: the store's health always, and bytes and
// connections per user when asked to (one label value per user, so it is opt-in).
package usermetrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fastrojan/fastrojan/internal/users"
)

// Collector reads a Ledger at scrape time.
type Collector struct {
	l       *users.Ledger
	perUser bool

	users, lastRefresh, lastFlush, pending, refreshErrs, flushErrs *prometheus.Desc
	bytes, conns, active                                           *prometheus.Desc
}

// New returns a collector for l; perUser adds the per-user series.
func New(l *users.Ledger, perUser bool) *Collector {
	return &Collector{
		l:           l,
		perUser:     perUser,
		users:       prometheus.NewDesc("fastrojan_users_snapshot_users", "Users in the last snapshot of the users table.", nil, nil),
		lastRefresh: prometheus.NewDesc("fastrojan_users_last_refresh_timestamp_seconds", "When the users table was last read successfully (0: never).", nil, nil),
		lastFlush:   prometheus.NewDesc("fastrojan_users_last_flush_timestamp_seconds", "When byte counts were last written successfully (0: never).", nil, nil),
		pending:     prometheus.NewDesc("fastrojan_users_pending_bytes", "Bytes counted but not yet confirmed in the database.", nil, nil),
		refreshErrs: prometheus.NewDesc("fastrojan_users_refresh_errors_total", "Failed reads of the users table.", nil, nil),
		flushErrs:   prometheus.NewDesc("fastrojan_users_flush_errors_total", "Failed writes of byte counts.", nil, nil),
		bytes:       prometheus.NewDesc("fastrojan_user_bytes_total", "Bytes relayed per database user by this process (direction up: from the client).", []string{"user", "direction"}, nil),
		conns:       prometheus.NewDesc("fastrojan_user_connections_total", "Connections per database user through this process.", []string{"user"}, nil),
		active:      prometheus.NewDesc("fastrojan_user_connections_active", "Open connections per database user.", []string{"user"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.users, c.lastRefresh, c.lastFlush, c.pending, c.refreshErrs, c.flushErrs} {
		ch <- d
	}
	if c.perUser {
		ch <- c.bytes
		ch <- c.conns
		ch <- c.active
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.l.Stats()
	ts := func(t interface{ UnixNano() int64 }, zero bool) float64 {
		if zero {
			return 0
		}
		return float64(t.UnixNano()) / 1e9
	}
	ch <- prometheus.MustNewConstMetric(c.users, prometheus.GaugeValue, float64(st.Users))
	ch <- prometheus.MustNewConstMetric(c.lastRefresh, prometheus.GaugeValue, ts(st.LastRefresh, st.LastRefresh.IsZero()))
	ch <- prometheus.MustNewConstMetric(c.lastFlush, prometheus.GaugeValue, ts(st.LastFlush, st.LastFlush.IsZero()))
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(st.PendingBytes))
	ch <- prometheus.MustNewConstMetric(c.refreshErrs, prometheus.CounterValue, float64(st.RefreshErrors))
	ch <- prometheus.MustNewConstMetric(c.flushErrs, prometheus.CounterValue, float64(st.FlushErrors))
	if !c.perUser {
		return
	}
	for _, u := range c.l.Totals() {
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(u.Down), u.Name, "down")
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(u.Up), u.Name, "up")
		ch <- prometheus.MustNewConstMetric(c.conns, prometheus.CounterValue, float64(u.Conns), u.Name)
		ch <- prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, float64(u.ActiveConns), u.Name)
	}
}
