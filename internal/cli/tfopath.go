package cli

import (
	"log/slog"

	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/metrics"
	"github.com/fastrojan/fastrojan/internal/tfo/pathstate"
)

// clientPaths is the client's per-server TCP Fast Open memory (README "Hostile paths") when it dials
// the server with TFO, nil otherwise. Its state is exported as metrics; each change is one log line.
func (t *telemetry) clientPaths(cfg *config.Config, log *slog.Logger) *pathstate.Table {
	if !cfg.TFOClient() {
		return nil
	}
	paths := pathstate.New(pathstate.Options{Logger: log})
	if err := t.metrics.Register(metrics.NewTFOPathCollector(paths)); err != nil {
		log.Warn("TFO path metrics unavailable", "err", err)
	}
	return paths
}
