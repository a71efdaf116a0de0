package tlsconf

import (
	"bytes"
	"crypto/tls"
	"log/slog"
	"slices"
	"strings"
	"testing"
)

const synLimitV6 = 1400 // the stricter of the two SYN limits (tfo.MaxSYNDataIPv6)

// With TFO and no ssl.curves the client offers X25519 first and its ClientHello fits in a SYN.
func TestFastOpenKeySharesFit(t *testing.T) {
	dir := t.TempDir()
	certFile, _, _ := certFiles(t, dir, "example.test")
	cfg, err := ClientTFO(clientSSL(certFile), "example.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.CurvePreferences, FastOpenCurves) || cfg.CurvePreferences[0] != tls.X25519 {
		t.Fatalf("curves %v, want %v", cfg.CurvePreferences, FastOpenCurves)
	}
	n, err := MeasureClientHello(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n < 100 || n > synLimitV6 {
		t.Errorf("ClientHello %d bytes; want a real hello within %d", n, synLimitV6)
	}
	plain, _ := Client(clientSSL(certFile), "example.test", nil)
	def, _ := MeasureClientHello(plain)
	t.Logf("ClientHello: %d bytes with TFO key shares, %d with Go's defaults", n, def)
	// Without TFO nothing changes: Go's defaults.
	if plain.CurvePreferences != nil {
		t.Errorf("without TFO: curves %v, want Go's defaults", plain.CurvePreferences)
	}
}

// An explicit ssl.curves wins, even a post-quantum hybrid that cannot fit; the check says so.
func TestExplicitHybridHonouredWithWarning(t *testing.T) {
	dir := t.TempDir()
	certFile, _, _ := certFiles(t, dir, "example.test")
	ssl := clientSSL(certFile)
	ssl.Curves = "X25519MLKEM768:X25519"
	cfg, err := ClientTFO(ssl, "example.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CurvePreferences[0] != tls.X25519MLKEM768 {
		t.Fatalf("curves %v; ssl.curves not honoured", cfg.CurvePreferences)
	}
	var buf bytes.Buffer
	rep, err := CheckClientHello(cfg, ssl, 1420, slog.New(slog.NewTextHandler(&buf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Fits || rep.Bytes <= 1420 {
		t.Errorf("report %+v; a hybrid key share cannot fit", rep)
	}
	log := buf.String()
	for _, want := range []string{"level=WARN", "will not save a round trip", "post-quantum hybrid X25519MLKEM768", "limit=1420"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

func TestCheckClientHelloReportsFit(t *testing.T) {
	cfg := &tls.Config{ServerName: "example.test", CurvePreferences: FastOpenCurves}
	var buf bytes.Buffer
	rep, err := CheckClientHello(cfg, clientSSL(""), 1400, slog.New(slog.NewTextHandler(&buf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Fits || rep.Limit != 1400 {
		t.Errorf("report %+v", rep)
	}
	if log := buf.String(); !strings.Contains(log, "level=INFO") || !strings.Contains(log, "fits in the TFO SYN") {
		t.Errorf("log:\n%s", log)
	}
}

// A resumption ClientHello carries the ticket and a binder; with the TFO key shares it still fits.
func TestResumedHelloFits(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := certFiles(t, dir, "example.test")
	ss := serverSSL(certFile, keyFile)
	ss.SessionTicket = true
	srv, _, err := Server(ss, nil)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := ClientTFO(clientSSL(certFile), "example.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := MeasureClientHello(cli)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := handshake(t, srv, cli); err != nil {
			t.Fatal(err)
		}
	}
	if st, err := handshake(t, srv, cli); err != nil || !st.DidResume {
		t.Fatalf("no resumption (err %v)", err)
	}
	resumed, err := MeasureClientHello(cli)
	if err != nil {
		t.Fatal(err)
	}
	if resumed <= fresh {
		t.Fatalf("resumption hello %d bytes, fresh %d: the measurement did not include the ticket", resumed, fresh)
	}
	if resumed > synLimitV6 {
		t.Errorf("resumption ClientHello %d bytes > %d", resumed, synLimitV6)
	}
	t.Logf("ClientHello %d bytes fresh, %d resumed", fresh, resumed)
}
