package netlab

import (
	"io"
	"net"
	"testing"
	"time"
)

func TestSmoke(t *testing.T) {
	p := NewPath(t, PathOptions{RTT: 20 * time.Millisecond})
	out, err := p.Client.Command("ip", "addr").CombinedOutput()
	t.Logf("%s %v", out, err)
	out, err = p.Client.Command("ping", "-c", "3", p.ServerAddr.V4.String()).CombinedOutput()
	t.Logf("%s %v", out, err)
	var ln net.Listener
	if err := p.Server.Do(func() error { var err error; ln, err = net.Listen("tcp", ":7000"); return err }); err != nil {
		t.Fatal(err)
	}
	go func() { c, err := ln.Accept(); if err == nil { io.Copy(c, c); c.Close() } }()
	for _, a := range []string{p.ServerAddr.V4.String(), p.ServerAddr.V6.String()} {
		var c net.Conn
		start := time.Now()
		err := p.Client.Do(func() error { var err error; c, err = net.Dial("tcp", net.JoinHostPort(a, "7000")); return err })
		t.Logf("dial %s: %v %v", a, time.Since(start), err)
		if c != nil { c.Close() }
	}
	t.Log(p.Link.AtoB().Stats(), p.Link.BtoA().Stats())
	m, err := p.Server.TcpExt()
	t.Log(len(m), m["TCPFastOpenPassive"], err)
}
