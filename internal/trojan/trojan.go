// Package trojan is the Trojan wire codec, as described by trojan-gfw's docs/protocol.md:
//
//	request:   hex(SHA224(password)) CRLF CMD ATYP DST.ADDR DST.PORT CRLF payload...
//	UDP frame: ATYP DST.ADDR DST.PORT LENGTH CRLF payload
//
// CMD is 0x01 (CONNECT) or 0x03 (UDP ASSOCIATE); ATYP is 0x01 (IPv4, 4 bytes), 0x03 (domain: one length
// byte, then 1..255 bytes) or 0x04 (IPv6, 16 bytes); ports and LENGTH are big-endian uint16.
//
// Parsers work on byte slices that may hold only part of a message and report one of two errors:
// ErrShort when the bytes are a proper prefix of some valid message (read more and try again), and an
// error wrapping ErrInvalid as soon as no continuation can make them valid. A server uses that to hand a
// prober to the fallback site without waiting for bytes that will never make a valid request.
//
// Error messages never contain the bytes of a password hash: on the wire the hash is the credential.
package trojan

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
)

// ErrShort means more bytes are needed: the input is a proper prefix of something that could be valid.
// It is returned unwrapped, so comparing with == works too.
var ErrShort = errors.New("trojan: more bytes needed")

// ErrInvalid means the input can never become valid, whatever follows. It is returned wrapped with
// detail; test for it with errors.Is.
var ErrInvalid = errors.New("trojan: invalid data")

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// HashLen is the length of a password hash on the wire: SHA-224 in lowercase hex.
const HashLen = 56

// Hash is the lowercase hex of SHA224(password), as ASCII bytes: exactly what a client sends first.
//
// String, GoString, LogValue and MarshalJSON all give a redacted form, so a Hash passed to fmt,
// log/slog or encoding/json does not leak the credential; Hex gives the full value for storage.
type Hash [HashLen]byte

// lowerHex[c] reports whether c is one of 0-9a-f.
var lowerHex = func() (t [256]bool) {
	for _, c := range []byte("0123456789abcdef") {
		t[c] = true
	}
	return t
}()

// HashPassword returns the hash a client sends for password.
func HashPassword(password string) Hash {
	sum := sha256.Sum224([]byte(password))
	var h Hash
	hex.Encode(h[:], sum[:])
	return h
}

// ParseHash parses the 56 hex digits of a stored hash (a MySQL users.password column, for example).
// Upper-case digits are accepted and normalised to lower case. The error never repeats the input.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != HashLen {
		return Hash{}, invalidf("password hash has %d characters, want %d", len(s), HashLen)
	}
	for i := range len(s) {
		c := s[i]
		if 'A' <= c && c <= 'F' {
			c += 'a' - 'A'
		}
		if !lowerHex[c] {
			return Hash{}, invalidf("password hash character %d is not a hex digit", i)
		}
		h[i] = c
	}
	return h, nil
}

// IsZero reports whether h is the zero Hash (no hash at all).
func (h Hash) IsZero() bool { return h == Hash{} }

// String returns a redacted form safe for logs: the first 6 hex digits and "…".
func (h Hash) String() string {
	if h.IsZero() {
		return "(no hash)"
	}
	return string(h[:6]) + "…"
}

// GoString is redacted like String, so %#v does not print the whole hash either.
func (h Hash) GoString() string { return "trojan.Hash(" + h.String() + ")" }

// LogValue is redacted like String; without it slog's JSON handler would print every byte.
func (h Hash) LogValue() slog.Value { return slog.StringValue(h.String()) }

// MarshalJSON is redacted like String: encoding/json would otherwise print the hash as 56 numbers.
// Store Hex instead.
func (h Hash) MarshalJSON() ([]byte, error) { return strconv.AppendQuote(nil, h.String()), nil }

// Hex returns all 56 hex digits, for storage and comparison. Never log it.
func (h Hash) Hex() string { return string(h[:]) }

// Command is the CMD byte of a request.
type Command byte

// The commands trojan-gfw defines, and trojan-go's multiplexing.
const (
	CmdConnect      Command = 0x01
	CmdUDPAssociate Command = 0x03
	// CmdMux starts a trojan-go mux session: smux on the rest of the connection, each stream opened
	// with a SimpleSocks header (package mux). Its destination is a placeholder ("MUX_CONN":0).
	CmdMux Command = 0x7f
)

// Valid reports whether c is a command this package can encode and parse.
func (c Command) Valid() bool { return c == CmdConnect || c == CmdUDPAssociate || c == CmdMux }

func (c Command) String() string {
	switch c {
	case CmdConnect:
		return "CONNECT"
	case CmdUDPAssociate:
		return "UDP_ASSOCIATE"
	case CmdMux:
		return "MUX"
	}
	return fmt.Sprintf("Command(0x%02x)", byte(c))
}
