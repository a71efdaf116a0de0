package server

import (
	"context"
	"crypto/tls"
	"log/slog"
	"path/filepath"

	"github.com/fastrojan/fastrojan/internal/acme"
	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/service"
	"github.com/fastrojan/fastrojan/internal/tlsconf"
)

// certSource is where a server's certificate comes from; Reload is SIGUSR1 (files: read them again;
// ACME: renew now).
type certSource interface{ Reload() error }

// tlsFromConfig builds the server's TLS config with its certificate from ssl.cert/ssl.key or, when
// fastrojan.acme names domains, from an ACME CA (storage under stateDir unless acme.storage says).
func tlsFromConfig(cfg *config.Config, log *slog.Logger, stateDir string) (*tls.Config, certSource, error) {
	a := cfg.Fastrojan.ACME
	if !a.Enabled() {
		return tlsconf.Server(cfg.SSL, log)
	}
	storage := a.Storage
	if storage == "" {
		storage = filepath.Join(stateDir, "acme")
	}
	m, err := acme.New(acme.Options{
		Domains:  a.Domains,
		Email:    a.Email,
		CA:       a.CA,
		CARoot:   a.CARoot,
		Storage:  storage,
		TLSAddr:  cfg.LocalHostPort(),
		HTTPAddr: a.HTTPListen,
		TLSALPN:  a.Challenge(config.ChallengeTLSALPN),
		HTTP01:   a.Challenge(config.ChallengeHTTP),
		Logger:   log,
	})
	if err != nil {
		return nil, nil, err
	}
	return m.TLSConfig(tlsconf.ServerWith(cfg.SSL, m.GetCertificate, log)), m, nil
}

// certificatesPart starts an ACME manager (call it once the server's listener is open): it loads the
// certificate of an earlier run or obtains the first one, then renews until stopped. A failed first
// issuance ends the part with its error, and so the process: it never goes on with a self-signed
// certificate. onReady (optional) runs once a real certificate is in use.
func certificatesPart(m *acme.Manager, log *slog.Logger, onReady func()) (service.Part, error) {
	if err := m.Start(context.Background()); err != nil {
		return service.Part{}, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return service.Part{
		Name: "certificates (ACME)",
		Run: func() error {
			if err := m.Obtain(ctx); err != nil {
				if ctx.Err() != nil {
					return nil // stopped while obtaining
				}
				log.Error("no certificate: stopping (nothing is served with a self-signed certificate instead)", "err", err)
				return err
			}
			if onReady != nil {
				onReady()
			}
			<-ctx.Done()
			return nil
		},
		Stop: func(context.Context) error { cancel(); return m.Close() },
	}, nil
}
