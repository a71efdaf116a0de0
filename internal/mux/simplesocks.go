// Package mux speaks trojan-go's multiplexing: a Trojan request with CMD 0x7f (trojan.CmdMux) and
// the placeholder destination "MUX_CONN":0, then smux (github.com/xtaci/smux, the module trojan-go
// uses, protocol version 1) on the rest of the connection; every stream starts with a SimpleSocks
// header, CMD ATYP ADDR PORT (the Trojan header without hash and CRLFs), and then carries a TCP
// stream (CONNECT) or Trojan UDP frames (UDP ASSOCIATE).
package mux

import (
	"errors"
	"fmt"
	"io"

	"github.com/fastrojan/fastrojan/internal/trojan"
)

// Placeholder is the destination of the Trojan request that starts a mux session, as trojan-go
// sends it.
var Placeholder = trojan.Addr{Domain: "MUX_CONN", Port: 0}

// MaxHeaderLen is the longest SimpleSocks header: CMD, ATYP, a 255-byte name with its length, port.
const MaxHeaderLen = 1 + 1 + 1 + 255 + 2

// AppendHeader appends the SimpleSocks header for cmd and dest to b.
func AppendHeader(b []byte, cmd trojan.Command, dest trojan.Addr) ([]byte, error) {
	if cmd != trojan.CmdConnect && cmd != trojan.CmdUDPAssociate {
		return b, fmt.Errorf("simplesocks: command %s cannot open a stream", cmd)
	}
	b = append(b, byte(cmd))
	return dest.AppendTo(b)
}

// ParseHeader parses a SimpleSocks header at the start of b; n is its length. It returns an error
// wrapping trojan.ErrShort when b is a proper prefix of a valid header, trojan.ErrInvalid otherwise.
func ParseHeader(b []byte) (cmd trojan.Command, dest trojan.Addr, n int, err error) {
	if len(b) == 0 {
		return 0, trojan.Addr{}, 0, trojan.ErrShort
	}
	cmd = trojan.Command(b[0])
	if cmd != trojan.CmdConnect && cmd != trojan.CmdUDPAssociate {
		return 0, trojan.Addr{}, 0, fmt.Errorf("simplesocks: command 0x%02x: %w", b[0], trojan.ErrInvalid)
	}
	dest, an, err := trojan.ParseAddr(b[1:])
	if err != nil {
		return 0, trojan.Addr{}, 0, err
	}
	return cmd, dest, 1 + an, nil
}

// ReadHeader reads a SimpleSocks header from r, reading no byte past it.
func ReadHeader(r io.Reader) (cmd trojan.Command, dest trojan.Addr, err error) {
	var buf [MaxHeaderLen]byte
	n := 0
	for need := 2; ; {
		if _, err := io.ReadFull(r, buf[n:need]); err != nil {
			return 0, trojan.Addr{}, fmt.Errorf("simplesocks header: %w", err)
		}
		n = need
		cmd, dest, _, err := ParseHeader(buf[:n])
		switch {
		case err == nil:
			return cmd, dest, nil
		case !errors.Is(err, trojan.ErrShort):
			return 0, trojan.Addr{}, err
		}
		need = n + 1
		switch buf[1] { // ATYP: read what it announces at once
		case 0x01:
			need = 1 + 1 + 4 + 2
		case 0x04:
			need = 1 + 1 + 16 + 2
		case 0x03:
			if n >= 3 {
				need = 1 + 1 + 1 + int(buf[2]) + 2
			}
		}
		if need <= n || need > len(buf) {
			return 0, trojan.Addr{}, fmt.Errorf("simplesocks header: %w", trojan.ErrInvalid)
		}
	}
}
