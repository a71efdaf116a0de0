package tlsconf

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/fastrojan/fastrojan/internal/config"
)

// FastOpenCurves is the key-exchange set used when the client dials with TCP Fast Open and ssl.curves
// is empty: X25519 first, so the ClientHello carries one 32-byte key share and fits in the SYN
// (about 270-300 bytes instead of Go's default 1500+, whose X25519MLKEM768 share alone is 1216 bytes;
// DESIGN.md 3.4). P-256 and P-384 are offered for servers without X25519; they cost no key share.
var FastOpenCurves = []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384}

// ClientTFO is Client for a client that dials the server with TCP Fast Open: with ssl.curves empty
// it offers FastOpenCurves instead of Go's defaults, so the ClientHello fits in the SYN. An explicit
// ssl.curves is honoured as written; CheckClientHello tells whether it fits.
func ClientTFO(ssl config.SSL, remoteAddr string, log *slog.Logger) (*tls.Config, error) {
	cfg, err := Client(ssl, remoteAddr, log)
	if err != nil {
		return nil, err
	}
	cfg.CurvePreferences = CurvePreferencesFor(ssl, true)
	return cfg, nil
}

// CurvePreferencesFor is CurvePreferences for a client that uses TCP Fast Open (fastOpen true):
// empty ssl.curves gives FastOpenCurves.
func CurvePreferencesFor(ssl config.SSL, fastOpen bool) []tls.CurveID {
	ids := CurvePreferences(ssl)
	if ids == nil && fastOpen {
		return slices.Clone(FastOpenCurves)
	}
	return ids
}

// MeasureClientHello returns the size in bytes of the first write a client with cfg makes: the TLS
// record holding its ClientHello, which is what a TFO SYN must carry. With a session cached in
// cfg.ClientSessionCache for serverName it measures the resumption hello. Nothing goes on the network.
func MeasureClientHello(cfg *tls.Config) (int, error) {
	rec := &helloRecorder{}
	c := tls.Client(rec, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.HandshakeContext(ctx)
	if rec.n == 0 {
		return 0, fmt.Errorf("measure ClientHello: nothing written: %w", err)
	}
	return rec.n, nil
}

var errMeasured = errors.New("ClientHello recorded")

// helloRecorder is a net.Conn that records the size of the first write and fails every read, which
// ends the handshake right after the ClientHello.
type helloRecorder struct{ n int }

func (r *helloRecorder) Write(b []byte) (int, error) {
	if r.n == 0 {
		r.n = len(b)
	}
	return len(b), nil
}
func (r *helloRecorder) Read([]byte) (int, error)         { return 0, errMeasured }
func (r *helloRecorder) Close() error                     { return nil }
func (r *helloRecorder) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (r *helloRecorder) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (r *helloRecorder) SetDeadline(time.Time) error      { return nil }
func (r *helloRecorder) SetReadDeadline(time.Time) error  { return nil }
func (r *helloRecorder) SetWriteDeadline(time.Time) error { return nil }

// HelloReport is what CheckClientHello found.
type HelloReport struct {
	Bytes int  // size of the ClientHello record
	Limit int  // what fits in a SYN to the server (tfo.MaxSYNDataIPv4 or IPv6)
	Fits  bool // Bytes <= Limit
}

// CheckClientHello measures the ClientHello cfg sends (see MeasureClientHello) against limit, the SYN
// payload limit for the server, and logs the result once: at Info when it fits, as a warning naming
// the cause when it does not (TFO then saves no round trip: the rest of the hello follows after the
// handshake). ssl is the "ssl" object the config came from, to name an explicit ssl.curves.
func CheckClientHello(cfg *tls.Config, ssl config.SSL, limit int, log *slog.Logger) (HelloReport, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n, err := MeasureClientHello(cfg)
	if err != nil {
		return HelloReport{}, err
	}
	r := HelloReport{Bytes: n, Limit: limit, Fits: n <= limit}
	groups := curveNames(cfg.CurvePreferences)
	if r.Fits {
		log.Info("TLS ClientHello fits in the TFO SYN", "bytes", n, "limit", limit, "groups", groups)
		return r, nil
	}
	why := "the key shares are too large"
	switch {
	case len(cfg.CurvePreferences) > 0 && isHybrid(cfg.CurvePreferences[0]) && ssl.Curves != "":
		why = "ssl.curves (" + ssl.Curves + ") puts the post-quantum hybrid " + cfg.CurvePreferences[0].String() + " first, whose key share alone is over 1 KB"
	case cfg.CurvePreferences == nil:
		why = "Go's default key shares include the post-quantum hybrid X25519MLKEM768, over 1 KB"
	}
	log.Warn("TLS ClientHello does not fit in the TFO SYN: TCP Fast Open will not save a round trip",
		"bytes", n, "limit", limit, "groups", groups, "why", why,
		"fix", "put X25519 first in ssl.curves (or leave ssl.curves empty)")
	return r, nil
}

func isHybrid(id tls.CurveID) bool {
	return id == tls.X25519MLKEM768 || id == tls.SecP256r1MLKEM768 || id == tls.SecP384r1MLKEM1024
}

func curveNames(ids []tls.CurveID) string {
	if ids == nil {
		return "Go defaults"
	}
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = id.String()
	}
	return strings.Join(s, ":")
}
