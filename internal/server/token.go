package server

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/fastrojan/fastrojan/internal/decoy"
)

// How often the fallback site's Server header is read again, and how soon after a failed attempt.
const (
	tokenRefresh = 10 * time.Minute
	tokenRetry   = 30 * time.Second
)

// serverToken is the name the built-in answers to non-TLS input give in their Server header and page
// footer: Options.ServerToken, else what the fallback site says in its own Server header (so the TLS
// port and the site agree), else "nginx".
func (s *Server) serverToken() string {
	if s.opts.ServerToken != "" {
		return s.opts.ServerToken
	}
	if t := s.token.Load(); t != nil && *t != "" {
		return *t
	}
	return decoy.DefaultToken
}

// startTokenLearner reads the fallback site's Server header now and every tokenRefresh, until the
// server stops. It runs at most once per server.
func (s *Server) startTokenLearner() {
	if s.opts.ServerToken != "" || s.opts.Fallback == "" || s.opts.TLSSite != "" || len(s.opts.PlainHTTPResponse) > 0 {
		return
	}
	s.tokenOnce.Do(func() {
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			for {
				wait := tokenRefresh
				tok, err := fetchServerHeader(s.ctx, s.opts.Dial, s.opts.Fallback)
				if err != nil {
					if s.ctx.Err() != nil {
						return
					}
					s.log.Debug("could not read the fallback site's Server header", "err", err)
					wait = tokenRetry
				} else {
					s.token.Store(&tok)
				}
				select {
				case <-time.After(wait):
				case <-s.ctx.Done():
					return
				}
			}
		}()
	})
}

// fetchServerHeader asks the site at addr for "HEAD /" and returns its Server header ("" if none).
func fetchServerHeader(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error), addr string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("dial fallback %s: %w", addr, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	host, _, _ := net.SplitHostPort(addr)
	if _, err := fmt.Fprintf(c, "HEAD / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host); err != nil {
		return "", fmt.Errorf("ask fallback %s: %w", addr, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodHead})
	if err != nil {
		return "", fmt.Errorf("read fallback %s: %w", addr, err)
	}
	resp.Body.Close()
	return resp.Header.Get("Server"), nil
}
