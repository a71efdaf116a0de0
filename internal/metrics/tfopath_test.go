package metrics

import (
	"log/slog"
	"testing"

	"github.com/fastrojan/fastrojan/internal/tfo"
	"github.com/fastrojan/fastrojan/internal/tfo/pathstate"
)

// The per-server TFO state shows in a scrape: the current state, entries into states, races and
// their winners, per server address.
func TestTFOPathCollector(t *testing.T) {
	paths := pathstate.New(pathstate.Options{Logger: slog.New(slog.DiscardHandler), DropsToDisable: 1})
	m := New()
	if err := m.Register(NewTFOPathCollector(paths)); err != nil {
		t.Fatal(err)
	}
	const a, b = "192.0.2.1:443", "192.0.2.2:443"
	paths.Report(pathstate.Result{Plan: paths.Plan(a), Raced: true, Winner: pathstate.WonPlain, SYNUnanswered: true})
	paths.Report(pathstate.Result{Plan: paths.Plan(b), Outcome: tfo.Accepted, Raced: true, Winner: pathstate.WonTFO})
	paths.Report(pathstate.Result{Plan: paths.Plan(b), Outcome: tfo.Accepted, Winner: pathstate.WonTFO})
	body := scrape(t, m)
	wantLines(t, body,
		`fastrojan_tfo_path_state{server="192.0.2.1:443",state="disabled"} 1`,
		`fastrojan_tfo_path_state{server="192.0.2.1:443",state="working"} 0`,
		`fastrojan_tfo_path_state{server="192.0.2.2:443",state="working"} 1`,
		`fastrojan_tfo_path_transitions_total{server="192.0.2.1:443",state="disabled"} 1`,
		`fastrojan_tfo_races_started_total{server="192.0.2.1:443"} 1`,
		`fastrojan_tfo_races_won_total{server="192.0.2.1:443",winner="plain"} 1`,
		`fastrojan_tfo_races_won_total{server="192.0.2.2:443",winner="tfo"} 1`,
		`fastrojan_tfo_races_started_total{server="192.0.2.2:443"} 1`,
	)
}
