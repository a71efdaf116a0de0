// Package website is the built-in fallback site: what a prober sees when it talks to a fastrojan
// server without a valid password and the operator has not pointed remote_addr at a site of their own.
// It is a small, ordinary static site served by net/http, so that its answers (status lines,
// headers, error pages) are those of a common web server rather than something hand-made.
package website

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

const indexHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Welcome</title>
<style>body{font-family:sans-serif;max-width:40em;margin:4em auto;color:#333}</style>
</head>
<body>
<h1>It works.</h1>
<p>This server is up and running. There is nothing else to see here yet.</p>
</body>
</html>
`

// Handler serves the site: the index page at "/", 404 elsewhere.
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write([]byte(indexHTML))
	})
	return mux
}

// Site is a running fallback site.
type Site struct {
	srv     *http.Server
	ln      net.Listener
	done    chan error
	stop    sync.Once
	stopErr error
}

// Start serves the site on addr (for example "127.0.0.1:0").
func Start(addr string, log *slog.Logger) (*Site, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("fallback site listen %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	if log != nil {
		srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	}
	s := &Site{srv: srv, ln: ln, done: make(chan error, 1)}
	go func() {
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	return s, nil
}

// Addr is where the site listens.
func (s *Site) Addr() string { return s.ln.Addr().String() }

// Shutdown stops the site, letting requests in flight finish until ctx is done.
// It is safe to call more than once.
func (s *Site) Shutdown(ctx context.Context) error {
	s.stop.Do(func() {
		err := s.srv.Shutdown(ctx)
		if serveErr := <-s.done; err == nil {
			err = serveErr
		}
		s.stopErr = err
	})
	return s.stopErr
}
