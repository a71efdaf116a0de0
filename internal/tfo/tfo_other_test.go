//go:build !linux

package tfo

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

// Off Linux, TFO is reported unsupported and dialing and listening work without it.
func TestUnsupportedHere(t *testing.T) {
	if _, err := ReadSysctl(); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("ReadSysctl: %v, want ErrUnsupported", err)
	}
	if _, err := ReadTcpExt(); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("ReadTcpExt: %v, want ErrUnsupported", err)
	}
	if pl, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}); err == nil {
		if err := EnableListener(pl, 8, nil); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("EnableListener: %v, want ErrUnsupported", err)
		}
		pl.Close()
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ln, err := Listen(context.Background(), "tcp", "127.0.0.1:0", 8, log)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if ServerOutcome(c) != Unsupported {
				t.Error("ServerOutcome is not unsupported")
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	d := &Dialer{Logger: log}
	for range 2 {
		c, err := d.DialContext(context.Background(), "tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("x"))
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		if o := ClientOutcome(c); o != Unsupported {
			t.Errorf("ClientOutcome = %s, want unsupported", o)
		}
		c.Close()
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 2 { // one for the listener, one for the dialer
		t.Errorf("%d warnings, want 2:\n%s", n, logs.String())
	}
}

// Listener queues are read on Linux only; elsewhere the stub says so, and nothing is reset.
func TestListenerQueueUnsupported(t *testing.T) {
	ln, err := Listen(context.Background(), "tcp", "127.0.0.1:0", 8, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := ListenerQueue(ln); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("ListenerQueue: %v, want ErrUnsupported", err)
	}
	if ResetIfHalfOpen(nil) {
		t.Error("ResetIfHalfOpen did something")
	}
}
