package server

import (
	"errors"
	"net"
)

// maxRefusedReplay bounds what heldConn records of a handshake: a ClientHello with every extension
// fits many times over.
const maxRefusedReplay = 64 << 10

// heldConn sits under the TLS handshake when tls_site is set. It records what the client sends and
// holds back what the TLS stack writes until the stack next reads, so that a handshake refused on the
// ClientHello (an old version, no common cipher, a malformed hello) has sent nothing, not even the
// alert, and the connection can go to tls_site raw with every byte the client sent: the prober gets
// that server's answer to its ClientHello rather than ours.
type heldConn struct {
	net.Conn
	seen    []byte
	held    []byte
	flushed bool // something went out: from now on a pass-through
	over    bool // the client sent more than maxRefusedReplay before the handshake ended
}

func (h *heldConn) Read(b []byte) (int, error) {
	if len(h.held) > 0 {
		if err := h.flush(); err != nil {
			return 0, err
		}
	}
	n, err := h.Conn.Read(b)
	if !h.flushed && !h.over {
		if len(h.seen)+n > maxRefusedReplay {
			h.over, h.seen = true, nil
		} else {
			h.seen = append(h.seen, b[:n]...)
		}
	}
	return n, err
}

func (h *heldConn) Write(b []byte) (int, error) {
	if h.flushed {
		return h.Conn.Write(b)
	}
	h.held = append(h.held, b...)
	return len(b), nil
}

func (h *heldConn) flush() error {
	h.flushed, h.seen = true, nil
	held := h.held
	h.held = nil
	_, err := h.Conn.Write(held)
	return err
}

// done is called after a successful handshake: what the stack wrote last (TLS 1.2's server
// Finished) goes out now, and recording stops.
func (h *heldConn) done() error {
	if h.flushed && len(h.held) == 0 {
		return nil
	}
	return h.flush()
}

// refused reports whether the handshake failed before anything was sent and with every byte the
// client sent recorded: the case for tls_site. A timeout is not a refusal: the client said nothing
// that an HTTPS server would answer.
func (h *heldConn) refused(err error) bool {
	return h != nil && err != nil && !h.flushed && !h.over && len(h.seen) > 0 && !isTimeout(err) && !errors.Is(err, net.ErrClosed)
}

// CloseWrite half-closes the connection underneath (see replayConn).
func (h *heldConn) CloseWrite() error {
	if cw, ok := h.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
