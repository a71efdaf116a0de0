package trojan

import (
	"encoding/binary"
	"errors"
	"io"
)

// MaxUDPPayload is the largest UDP payload this package frames, parses or reads: 8192 bytes.
//
// The LENGTH field could say 65535, but the reference peers stop at 8192. trojan-gfw reads datagrams
// into an 8192-byte buffer (Session::MAX_LENGTH), so it never sends a larger payload, and it closes the
// session when more than 8192 bytes are buffered without a complete frame, so the whole frame it
// receives (address, LENGTH, CRLF and payload) must fit in 8192 bytes: a sender that wants to reach a
// trojan-gfw peer keeps UDPFrameLen(dst, len(payload)) <= MaxUDPPayload. trojan-go (MaxPacketSize)
// rejects payloads above 8192.
const MaxUDPPayload = 8192

// MaxUDPHeaderLen is the longest frame header: ATYP, a 255-byte domain, port, LENGTH, CRLF.
const MaxUDPHeaderLen = MaxAddrLen + 2 + 2

// UDPFrameLen is the encoded length of a frame to dst carrying n payload bytes.
func UDPFrameLen(dst Addr, n int) int { return dst.EncodedLen() + 4 + n }

// AppendUDPFrame appends ATYP ADDR PORT LENGTH CRLF payload. It does not allocate when b has room. On
// error (invalid dst, payload longer than MaxUDPPayload) b is returned unchanged.
func AppendUDPFrame(b []byte, dst Addr, payload []byte) ([]byte, error) {
	if len(payload) > MaxUDPPayload {
		return b, invalidf("UDP payload of %d bytes exceeds %d", len(payload), MaxUDPPayload)
	}
	b, err := dst.AppendTo(b)
	if err != nil {
		return b, err
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(payload)))
	b = append(b, '\r', '\n')
	return append(b, payload...), nil
}

// ParseUDPFrame parses one frame from the start of b; n is its length, the next frame starts at b[n:].
// payload aliases b (with its capacity clipped, so appending to it cannot overwrite the next frame).
// ErrShort and ErrInvalid mean what they mean for ParseRequest; a LENGTH above MaxUDPPayload is
// ErrInvalid as soon as it is seen.
func ParseUDPFrame(b []byte) (dst Addr, payload []byte, n int, err error) {
	dst, an, err := ParseAddr(b)
	if err != nil {
		return Addr{}, nil, 0, err
	}
	if len(b) >= an+2 {
		if l := int(binary.BigEndian.Uint16(b[an:])); l > MaxUDPPayload {
			return Addr{}, nil, 0, invalidf("UDP payload length %d exceeds %d", l, MaxUDPPayload)
		}
	}
	if len(b) > an+2 && b[an+2] != '\r' {
		return Addr{}, nil, 0, invalidf("byte %d after the UDP length is not CR", an+2)
	}
	if len(b) > an+3 && b[an+3] != '\n' {
		return Addr{}, nil, 0, invalidf("byte %d after the UDP length is not LF", an+3)
	}
	if len(b) < an+4 {
		return Addr{}, nil, 0, ErrShort
	}
	start := an + 4
	end := start + int(binary.BigEndian.Uint16(b[an:]))
	if len(b) < end {
		return Addr{}, nil, 0, ErrShort
	}
	return dst, b[start:end:end], end, nil
}

// ReadUDPFrame reads exactly one frame from r into buf and returns its destination and payload, which
// aliases buf. It needs len(buf) >= MaxUDPHeaderLen (else io.ErrShortBuffer) and allocates nothing for
// an IP destination. A frame whose LENGTH exceeds MaxUDPPayload or len(buf) is ErrInvalid (wrapped);
// after any error other than io.EOF the stream is out of step and must be closed. It returns io.EOF
// when r ends cleanly between frames and io.ErrUnexpectedEOF when it ends inside one. r should be
// buffered (a bufio.Reader over the TLS connection): a frame takes two or three reads.
func ReadUDPFrame(r io.Reader, buf []byte) (dst Addr, payload []byte, err error) {
	if len(buf) < MaxUDPHeaderLen {
		return Addr{}, nil, io.ErrShortBuffer
	}
	// ATYP and the byte after it (IPv4/IPv6: first address byte; domain: its length).
	if _, err := io.ReadFull(r, buf[:2]); err != nil {
		return Addr{}, nil, err // io.EOF only if nothing at all was read
	}
	var hlen int
	switch buf[0] {
	case atypIPv4:
		hlen = 1 + 4 + 2 + 4
	case atypIPv6:
		hlen = 1 + 16 + 2 + 4
	case atypDomain:
		if buf[1] == 0 {
			return Addr{}, nil, invalidf("zero-length domain")
		}
		hlen = 1 + 1 + int(buf[1]) + 2 + 4
	default:
		return Addr{}, nil, invalidf("unknown address type 0x%02x", buf[0])
	}
	if err := readFull(r, buf[2:hlen]); err != nil {
		return Addr{}, nil, err
	}
	dst, an, err := ParseAddr(buf[:hlen])
	if err != nil {
		return Addr{}, nil, err // cannot happen: the type and length were checked above
	}
	l := int(binary.BigEndian.Uint16(buf[an:]))
	if buf[an+2] != '\r' || buf[an+3] != '\n' {
		return Addr{}, nil, invalidf("UDP length is not followed by CRLF")
	}
	if l > MaxUDPPayload {
		return Addr{}, nil, invalidf("UDP payload length %d exceeds %d", l, MaxUDPPayload)
	}
	if l > len(buf) {
		return Addr{}, nil, invalidf("UDP payload length %d exceeds the %d-byte buffer", l, len(buf))
	}
	if err := readFull(r, buf[:l]); err != nil {
		return Addr{}, nil, err
	}
	return dst, buf[:l:l], nil
}

// readFull is io.ReadFull for the middle of a frame: an end of stream there is always unexpected.
func readFull(r io.Reader, b []byte) error {
	_, err := io.ReadFull(r, b)
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
