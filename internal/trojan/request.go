package trojan

import "log/slog"

// Request is the header a client sends first on every connection.
type Request struct {
	Hash Hash
	Cmd  Command
	Dest Addr
}

// LogValue gives a request as a group of redacted user hash, command and destination.
func (r Request) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("user", r.Hash.String()),
		slog.String("cmd", r.Cmd.String()),
		slog.String("dest", r.Dest.String()),
	)
}

// Offsets within a request header.
const (
	offCR   = HashLen     // '\r' after the hash
	offLF   = HashLen + 1 // '\n' after the hash
	offCmd  = HashLen + 2
	offAddr = HashLen + 3
)

// MinRequestLen and MaxRequestLen bound the length of a request header (IPv4 destination; 255-byte
// domain). A server that holds MaxRequestLen bytes and still gets ErrShort has a bug, not a short read.
const (
	MinRequestLen = HashLen + 2 + 1 + (1 + 4 + 2) + 2 // 68
	MaxRequestLen = HashLen + 2 + 1 + MaxAddrLen + 2  // 320
)

// AppendRequest appends hash CRLF CMD ATYP ADDR PORT CRLF. It does not allocate when b has room. On
// error (unknown command, invalid destination, zero or non-hex hash) b is returned unchanged.
func AppendRequest(b []byte, r Request) ([]byte, error) {
	if !r.Cmd.Valid() {
		return b, invalidf("unknown command 0x%02x", byte(r.Cmd))
	}
	if !HashPrefixValid(r.Hash[:]) {
		return b, invalidf("request hash is not %d lowercase hex digits", HashLen)
	}
	if err := r.Dest.check(); err != nil {
		return b, err
	}
	orig := len(b)
	b = append(b, r.Hash[:]...)
	b = append(b, '\r', '\n', byte(r.Cmd))
	b, err := r.Dest.AppendTo(b)
	if err != nil { // unreachable after check, kept so a future change cannot emit half a header
		return b[:orig], err
	}
	return append(b, '\r', '\n'), nil
}

// HashPrefixValid reports whether b could start a valid request as far as the hash and the CRLF after
// it go: bytes 0..55 lowercase hex, byte 56 '\r', byte 57 '\n'. Bytes from 58 on are not inspected, and
// a short b is judged on the bytes it has. ParseRequest applies the same test first, so a server that
// calls ParseRequest on every read needs nothing else.
//
// Only lowercase digits are accepted: every known client sends them, and an upper-case hash could never
// equal a stored one (trojan-gfw compares the strings, so it would refuse it too).
func HashPrefixValid(b []byte) bool {
	return hashPrefixCheck(b) == nil
}

func hashPrefixCheck(b []byte) error {
	m := min(len(b), HashLen)
	for i := range m {
		if !lowerHex[b[i]] {
			return invalidf("byte %d of the password hash is not a lowercase hex digit", i)
		}
	}
	if len(b) > offCR && b[offCR] != '\r' {
		return invalidf("byte %d after the hash is not CR", offCR)
	}
	if len(b) > offLF && b[offLF] != '\n' {
		return invalidf("byte %d after the hash is not LF", offLF)
	}
	return nil
}

// ParseRequest parses a request header from the start of b. n is the length of the header including
// its final CRLF; the payload is b[n:]. It returns ErrShort only when b is a proper prefix of a valid
// header, and an error wrapping ErrInvalid as soon as a byte rules that out: a non-hex byte in the hash,
// a missing CR or LF, an unknown CMD or ATYP, a zero-length domain. The hash itself is not checked
// against any user; that is the caller's job. Only a domain destination allocates.
func ParseRequest(b []byte) (r Request, n int, err error) {
	if err := hashPrefixCheck(b); err != nil {
		return Request{}, 0, err
	}
	if len(b) <= offCmd {
		return Request{}, 0, ErrShort
	}
	r.Cmd = Command(b[offCmd])
	if !r.Cmd.Valid() {
		return Request{}, 0, invalidf("unknown command 0x%02x", b[offCmd])
	}
	dest, an, err := ParseAddr(b[offAddr:])
	if err != nil {
		return Request{}, 0, err
	}
	end := offAddr + an
	if len(b) > end && b[end] != '\r' {
		return Request{}, 0, invalidf("byte %d after the destination is not CR", end)
	}
	if len(b) > end+1 && b[end+1] != '\n' {
		return Request{}, 0, invalidf("byte %d after the destination is not LF", end+1)
	}
	if len(b) < end+2 {
		return Request{}, 0, ErrShort
	}
	r.Hash = Hash(b[:HashLen])
	r.Dest = dest
	return r, end + 2, nil
}
