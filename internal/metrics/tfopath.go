package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fastrojan/fastrojan/internal/tfo/pathstate"
)

// TFOPathCollector exports the client's per-server TFO state (pathstate.Table), read at scrape
// time: the state of each server address, entries into each state, and the plain connections
// raced alongside late TFO attempts, by which one won.
type TFOPathCollector struct {
	table *pathstate.Table

	state, transitions, races, won *prometheus.Desc
}

// NewTFOPathCollector returns a collector for table; register it with Metrics.Register.
func NewTFOPathCollector(table *pathstate.Table) *TFOPathCollector {
	return &TFOPathCollector{
		table: table,
		state: prometheus.NewDesc("fastrojan_tfo_path_state",
			"TCP Fast Open state of the path to each server address (1 for the current state): working, suspect, disabled (SYN data dropped or refused; plain TCP until a back-off ends), probing.",
			[]string{"server", "state"}, nil),
		transitions: prometheus.NewDesc("fastrojan_tfo_path_transitions_total",
			"Entries into each TFO path state, per server address.", []string{"server", "state"}, nil),
		races: prometheus.NewDesc("fastrojan_tfo_races_started_total",
			"Plain connections started alongside a TFO attempt whose connect or TLS handshake was late, per server address.",
			[]string{"server"}, nil),
		won: prometheus.NewDesc("fastrojan_tfo_races_won_total",
			"Races by the connection that completed its TLS handshake first (tfo or plain), per server address.",
			[]string{"server", "winner"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *TFOPathCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.state
	ch <- c.transitions
	ch <- c.races
	ch <- c.won
}

// Collect implements prometheus.Collector.
func (c *TFOPathCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.table.Snapshot() {
		for _, st := range pathstate.States() {
			v := 0.0
			if s.State == st {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, v, s.Server, st.String())
			ch <- prometheus.MustNewConstMetric(c.transitions, prometheus.CounterValue, float64(s.Transitions[st]), s.Server, st.String())
		}
		ch <- prometheus.MustNewConstMetric(c.races, prometheus.CounterValue, float64(s.Races), s.Server)
		ch <- prometheus.MustNewConstMetric(c.won, prometheus.CounterValue, float64(s.RacesWonTFO), s.Server, "tfo")
		ch <- prometheus.MustNewConstMetric(c.won, prometheus.CounterValue, float64(s.RacesPlain), s.Server, "plain")
	}
}
