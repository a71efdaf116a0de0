package usermetrics_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fastrojan/fastrojan/internal/trojan"
	"github.com/fastrojan/fastrojan/internal/users"
	"github.com/fastrojan/fastrojan/internal/users/userdb/testdb"
	"github.com/fastrojan/fastrojan/internal/users/usermetrics"
)

// gather returns every sample as "name{labels}" → value.
func gather(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			k := mf.GetName()
			for _, lp := range m.GetLabel() {
				k += "," + lp.GetName() + "=" + lp.GetValue()
			}
			switch {
			case m.Gauge != nil:
				out[k] = m.GetGauge().GetValue()
			case m.Counter != nil:
				out[k] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

func TestHealthAndPerUser(t *testing.T) {
	d := testdb.SQLite(t)
	d.AddUser(t, "a", "pw-a", -1)
	d.AddUser(t, "b", "pw-b", -1)
	l, err := users.NewLedger(users.LedgerOptions{Backend: d.Open(t), Flush: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())
	u, ok := l.Lookup(trojan.HashPassword("pw-a"))
	if !ok {
		t.Fatal("user not loaded")
	}
	s, _ := l.Begin(u, func() {})
	s.Down().Add(300)
	s.Up().Add(20)

	health := gather(t, usermetrics.New(l, false))
	if health["fastrojan_users_snapshot_users"] != 2 || health["fastrojan_users_pending_bytes"] != 0 {
		t.Errorf("health: %v", health)
	}
	if health["fastrojan_users_last_refresh_timestamp_seconds"] < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last refresh not recent: %v", health["fastrojan_users_last_refresh_timestamp_seconds"])
	}
	for k := range health {
		if len(k) > len("fastrojan_user_") && k[:len("fastrojan_user_")] == "fastrojan_user_" {
			t.Errorf("per-user series %s without the opt-in", k)
		}
	}

	per := gather(t, usermetrics.New(l, true))
	lbl := ",user=" + u.Name
	if per["fastrojan_user_bytes_total,direction=down"+lbl] != 300 || per["fastrojan_user_bytes_total,direction=up"+lbl] != 20 ||
		per["fastrojan_user_connections_total"+lbl] != 1 || per["fastrojan_user_connections_active"+lbl] != 1 {
		t.Errorf("per-user series: %v", per)
	}
	s.End()
	time.Sleep(2 * users.Tick)
	after := gather(t, usermetrics.New(l, true))
	if after["fastrojan_users_pending_bytes"] != 320 || after["fastrojan_user_connections_active"+lbl] != 0 || after["fastrojan_user_bytes_total,direction=down"+lbl] != 300 {
		t.Errorf("after the connection ended: %v", after)
	}
}
