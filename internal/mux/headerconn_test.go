package mux

import (
	"bytes"
	"net"
	"testing"
)

// recConn records every Write as one element.
type recConn struct {
	net.Conn
	writes [][]byte
}

func (r *recConn) Write(b []byte) (int, error) {
	r.writes = append(r.writes, append([]byte(nil), b...))
	return len(b), nil
}

// While a stream opens, its SYN frame goes out with the frame after it (and the Trojan request in
// front of the very first), in one write; outside a hold every frame is written at once.
func TestHeaderConnCoalescesSYN(t *testing.T) {
	rc := &recConn{}
	h := &headerConn{Conn: rc, header: []byte("TROJAN")}
	syn := []byte{1, smuxCmdSYN, 0, 0, 3, 0, 0, 0}
	psh := []byte{1, 2, 3, 0, 3, 0, 0, 0, 'a', 'b', 'c'}
	h.hold()
	if n, err := h.Write(syn); n != len(syn) || err != nil {
		t.Fatalf("held SYN: %d, %v", n, err)
	}
	if len(rc.writes) != 0 {
		t.Fatalf("SYN written during the hold: %q", rc.writes)
	}
	if n, err := h.Write(psh); n != len(psh) || err != nil {
		t.Fatalf("PSH: %d, %v", n, err)
	}
	if err := h.release(); err != nil {
		t.Fatal(err)
	}
	want := append(append([]byte("TROJAN"), syn...), psh...)
	if len(rc.writes) != 1 || !bytes.Equal(rc.writes[0], want) {
		t.Fatalf("writes %q, want one %q", rc.writes, want)
	}

	// A hold that ends with only the SYN sends it at release.
	h.hold()
	h.Write(syn)
	if len(rc.writes) != 1 {
		t.Fatalf("SYN written during the hold")
	}
	h.release()
	if len(rc.writes) != 2 || !bytes.Equal(rc.writes[1], syn) {
		t.Fatalf("writes %q: the SYN must go at release", rc.writes)
	}
	// No hold: a SYN is written at once.
	h.Write(syn)
	if len(rc.writes) != 3 {
		t.Fatalf("SYN without a hold was kept back")
	}
}
