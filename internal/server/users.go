package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/metrics"
	"github.com/fastrojan/fastrojan/internal/users"
	"github.com/fastrojan/fastrojan/internal/users/userdb"
	"github.com/fastrojan/fastrojan/internal/users/usermetrics"
)

// usersFromConfig makes the server's user store from cfg: the config's passwords, plus trojan-gfw's
// MySQL table (mysql.enabled) or the same table in SQLite (fastrojan.users.sqlite). The returned
// stop function writes the last byte counts to the database (bounded by ctx) and is safe to call
// once the server has stopped. The store's health (and, with fastrojan.users.per_user_metrics,
// per-user series) goes to m (nil: no metrics).
func usersFromConfig(cfg *config.Config, log *slog.Logger, m *metrics.Metrics) (users.Store, func(context.Context) error, error) {
	static := users.NewStatic(cfg.Password)
	if !cfg.UserDatabase() {
		return static, nil, nil
	}
	u := cfg.Fastrojan.Users
	var (
		db   *userdb.DB
		err  error
		kind string
	)
	if cfg.MySQL.Enabled {
		m := cfg.MySQL
		kind = "mysql " + net.JoinHostPort(m.ServerAddr, strconv.Itoa(m.ServerPort)) + "/" + m.Database
		db, err = userdb.OpenMySQL(userdb.MySQLConfig{
			Addr:     net.JoinHostPort(m.ServerAddr, strconv.Itoa(m.ServerPort)),
			Database: m.Database,
			Username: m.Username,
			Password: m.Password,
			CA:       m.CA,
			Cert:     m.Cert,
			Key:      m.Key,
		}, log)
	} else {
		kind = "sqlite " + u.SQLite
		db, err = userdb.OpenSQLite(u.SQLite, log)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("user database: %w", err)
	}
	ledger, err := users.NewLedger(users.LedgerOptions{
		Backend: db,
		Static:  static,
		Refresh: time.Duration(u.Refresh),
		Flush:   time.Duration(u.Flush),
		Journal: u.Journal,
		Logger:  log,
	})
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("user database: %w", err)
	}
	if m != nil {
		if err := m.Register(usermetrics.New(ledger, u.PerUserMetrics)); err != nil {
			_ = ledger.Close(context.Background())
			return nil, nil, fmt.Errorf("user database metrics: %w", err)
		}
	}
	st := ledger.Stats()
	log.Info("user database", "db", kind, "users", st.Users, "refresh", u.Refresh, "flush", u.Flush,
		"journal", u.Journal, "pending_bytes", st.PendingBytes)
	stop := func(ctx context.Context) error {
		if err := ledger.Close(ctx); err != nil {
			log.Error("user database: final write of byte counts failed", "err", err)
			return nil // said here: the drain warning is about connections
		}
		log.Info("user database: byte counts written", "db", kind)
		return nil
	}
	return ledger, stop, nil
}
