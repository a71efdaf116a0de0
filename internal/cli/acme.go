package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/fastrojan/fastrojan/internal/acme"
	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/tlsconf"
)

// certSource is where a server's certificate comes from; Reload is SIGUSR1 (files: read them again;
// ACME: renew now).
type certSource interface{ Reload() error }

// serverTLS builds the server's TLS config with its certificate from ssl.cert/ssl.key or, when
// fastrojan.acme names domains, from an ACME CA.
func serverTLS(cfg *config.Config, log *slog.Logger) (*tls.Config, certSource, error) {
	a := cfg.Fastrojan.ACME
	if !a.Enabled() {
		return tlsconf.Server(cfg.SSL, log)
	}
	storage := a.Storage
	if storage == "" {
		storage = filepath.Join(defaultStateDir(), "acme")
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

// startCertificates starts an ACME manager once the server's listener is open: it loads the
// certificate of an earlier run or, in the background, obtains the first one. The returned context
// ends, with the error as its cause, if that first issuance fails (the server then stops: it never
// goes on with a self-signed certificate). onReady runs once a real certificate is in use (at once
// for certificate files). stop ends renewals and the HTTP-01 server.
func startCertificates(ctx context.Context, certs certSource, log *slog.Logger, onReady []func()) (context.Context, func(), error) {
	ready := func() {
		for _, f := range onReady {
			f()
		}
	}
	m, ok := certs.(*acme.Manager)
	if !ok {
		ready()
		return ctx, func() {}, nil
	}
	if err := m.Start(ctx); err != nil {
		return ctx, nil, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := m.Obtain(ctx); err != nil {
			if !errors.Is(err, context.Canceled) {
				log.Error("no certificate: stopping (nothing is served with a self-signed certificate instead)", "err", err)
			}
			cancel(err)
			return
		}
		ready()
	})
	stop := func() {
		cancel(context.Canceled)
		wg.Wait()
		_ = m.Close()
	}
	return ctx, stop, nil
}

// certsStartErr returns why ctx ended if that was a failed first issuance, else nil.
func certsStartErr(ctx context.Context) error {
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}
