package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"

	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/metrics"
	"github.com/fastrojan/fastrojan/internal/service"
	"github.com/fastrojan/fastrojan/internal/tfo/farm"
)

// farmKeys gives a server's listener the farm's TFO cookie keys (fastrojan.farm), keeps them rotating,
// and reloads the secret on SIGHUP. Without a secret it leaves the kernel's key alone, and a SIGHUP
// that brings one starts the rotation.
type farmKeys struct {
	log     *slog.Logger
	path    string        // config file re-read on SIGHUP ("" to re-read only the secret file)
	current config.Farm   // the farm settings in force
	ln      syscall.Conn  // the listener whose keys we set
	mu      sync.Mutex    // guards rot and current
	rot     *farm.Rotator // nil while no secret is configured
	stopHup func()
	closed  sync.Once
}

// startFarmKeys sets up cfg's farm keys on ln. Close undoes nothing on the socket (the listener keeps
// its last keys) but stops the rotation and the SIGHUP handler.
func startFarmKeys(cfg *config.Config, ln net.Listener, log *slog.Logger, m *metrics.Metrics) (*farmKeys, error) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("farm keys: listener %T does not expose its socket", ln)
	}
	k := &farmKeys{log: log, path: cfg.Path, current: cfg.Fastrojan.Farm, ln: sc}
	f, err := farm.FromConfig(cfg.Fastrojan.Farm)
	switch {
	case errors.Is(err, farm.ErrNoSecret):
		log.Info("TFO cookie keys: the kernel's own for this network namespace (no fastrojan.farm secret; servers sharing one address need one)")
	case err != nil:
		return nil, err
	default:
		if k.rot, err = farm.NewRotator(f, []syscall.Conn{sc}, farm.RotatorOptions{Logger: log}); err != nil {
			return nil, err
		}
		log.Info("TFO cookie keys from the farm secret", "rotation", f.Interval(), "skew", f.Skew(),
			"min_cookie_lifetime", f.MinCookieLifetime())
		if !cfg.TFOServerListen() {
			log.Warn("fastrojan.farm is set but the listener does not accept TCP Fast Open (tcp.fast_open is false): the keys have no effect")
		}
	}
	if m != nil {
		if err := m.GaugeFunc("fastrojan_tfo_farm_epoch",
			"Epoch of the TFO cookie key the server's listener makes cookies with (fastrojan.farm; see `fastrojan keys`); -1 without a farm secret.",
			k.epoch); err != nil {
			if k.rot != nil {
				k.rot.Close()
			}
			return nil, err
		}
	}
	k.stopHup = service.OnHangup(k.reload)
	return k, nil
}

func (k *farmKeys) epoch() float64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.rot == nil {
		return -1
	}
	return float64(k.rot.Epoch())
}

// reload re-reads the farm settings (the config file, or only the secret file) and applies them. On
// any error the keys in force stay.
func (k *farmKeys) reload() {
	next := k.current
	if k.path != "" {
		cfg, err := config.Load(k.path)
		if err != nil {
			k.log.Error("SIGHUP: config not reloaded; TFO farm keys unchanged", "err", err)
			return
		}
		next = cfg.Fastrojan.Farm
	}
	f, err := farm.FromConfig(next)
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case errors.Is(err, farm.ErrNoSecret) && k.rot == nil:
		return
	case errors.Is(err, farm.ErrNoSecret):
		k.log.Warn("SIGHUP: the farm secret is gone from the config; the listener keeps the farm keys until a restart")
		return
	case err != nil:
		k.log.Error("SIGHUP: TFO farm secret not reloaded; keys unchanged", "err", err)
		return
	case k.rot == nil:
		if k.rot, err = farm.NewRotator(f, []syscall.Conn{k.ln}, farm.RotatorOptions{Logger: k.log}); err != nil {
			k.log.Error("SIGHUP: TFO farm keys not set", "err", err)
			return
		}
	default:
		if err := k.rot.SetFarm(f); err != nil {
			k.log.Error("SIGHUP: TFO farm keys not set; retrying within a minute", "err", err)
		}
	}
	k.current = next
	k.log.Info("SIGHUP: TFO farm secret reloaded", "rotation", f.Interval(), "skew", f.Skew(), "epoch", k.rot.Epoch())
}

// Close stops the SIGHUP handler and the rotation. It is idempotent.
func (k *farmKeys) Close() error {
	if k == nil {
		return nil
	}
	k.closed.Do(k.stopHup)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.rot != nil {
		return k.rot.Close()
	}
	return nil
}
