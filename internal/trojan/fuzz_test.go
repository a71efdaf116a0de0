package trojan_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/fastrojan/fastrojan/internal/trojan"
)

// checkErr fails unless err is nil, exactly ErrShort, or wraps ErrInvalid, and n agrees with it.
func checkErr(t *testing.T, err error, n, max int) {
	t.Helper()
	switch {
	case err == nil:
		if n <= 0 || n > max {
			t.Fatalf("ok with n = %d, input has %d bytes", n, max)
		}
	case err == trojan.ErrShort, errors.Is(err, trojan.ErrInvalid):
		if n != 0 {
			t.Fatalf("error %v with n = %d", err, n)
		}
	default:
		t.Fatalf("error %v is neither ErrShort nor ErrInvalid", err)
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, v := range requestVectors {
		f.Add([]byte(v.wire))
		f.Add([]byte(v.wire + "payload"))
		f.Add([]byte(v.wire[:len(v.wire)-3]))
	}
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	f.Add([]byte("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"))
	f.Add([]byte(pwHex + "\r\n\x01\x03\x00\x00\x50\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, n, err := trojan.ParseRequest(b)
		checkErr(t, err, n, len(b))
		if err == trojan.ErrShort && len(b) >= trojan.MaxRequestLen {
			t.Fatalf("ErrShort with %d bytes, MaxRequestLen is %d", len(b), trojan.MaxRequestLen)
		}
		if errors.Is(err, trojan.ErrInvalid) {
			// Invalid stays invalid whatever follows.
			if _, _, err2 := trojan.ParseRequest(append(b[:len(b):len(b)], "\r\n\x01\x01"...)); !errors.Is(err2, trojan.ErrInvalid) {
				t.Fatalf("invalid input became %v after more bytes", err2)
			}
			return
		}
		if err != nil {
			return
		}
		enc, err := trojan.AppendRequest(nil, r)
		if err != nil {
			t.Fatalf("parsed %#v but cannot encode it: %v", r, err)
		}
		if !bytes.Equal(enc, b[:n]) {
			t.Fatalf("re-encoding gives %q, input was %q", enc, b[:n])
		}
		for i := range n {
			if _, _, err := trojan.ParseRequest(b[:i]); err != trojan.ErrShort {
				t.Fatalf("prefix of %d bytes of a valid header: %v, want ErrShort", i, err)
			}
		}
	})
}

func FuzzParseAddr(f *testing.F) {
	for _, v := range addrVectors {
		f.Add([]byte(v.wire))
	}
	f.Add([]byte{0x03, 0x00})
	f.Add([]byte{0x05})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, n, err := trojan.ParseAddr(b)
		checkErr(t, err, n, len(b))
		if err == trojan.ErrShort && len(b) >= trojan.MaxAddrLen {
			t.Fatalf("ErrShort with %d bytes", len(b))
		}
		if err != nil {
			return
		}
		enc, err := a.AppendTo(nil)
		if err != nil {
			t.Fatalf("parsed %#v but cannot encode it: %v", a, err)
		}
		if !bytes.Equal(enc, b[:n]) || a.EncodedLen() != n {
			t.Fatalf("re-encoding gives %x (EncodedLen %d), input was %x", enc, a.EncodedLen(), b[:n])
		}
	})
}

func FuzzParseUDPFrame(f *testing.F) {
	for _, v := range udpVectors {
		if len(v.wire) < 100 {
			f.Add([]byte(v.wire))
			f.Add([]byte(v.wire + v.wire))
		}
	}
	f.Add([]byte("\x01\x01\x02\x03\x04\x00\x35\x20\x01\r\n"))
	f.Add([]byte("\x03\x00\x00\x35\x00\x01\r\nx"))
	buf := make([]byte, trojan.MaxUDPPayload)
	f.Fuzz(func(t *testing.T, b []byte) {
		dst, p, n, err := trojan.ParseUDPFrame(b)
		checkErr(t, err, n, len(b))
		if err == trojan.ErrShort && len(b) >= trojan.MaxUDPHeaderLen+trojan.MaxUDPPayload {
			t.Fatalf("ErrShort with %d bytes", len(b))
		}
		// ReadUDPFrame on the same bytes must agree; it may only be less eager to call them invalid,
		// since it reads the whole header before checking it.
		rdst, rp, rerr := trojan.ReadUDPFrame(bytes.NewReader(b), buf)
		switch {
		case err == nil:
			if rerr != nil || rdst != dst || !bytes.Equal(rp, p) {
				t.Fatalf("ReadUDPFrame = %v, %q, %v; ParseUDPFrame = %v, %q", rdst, rp, rerr, dst, p)
			}
		case err == trojan.ErrShort:
			if (len(b) == 0 && rerr != io.EOF) || (len(b) > 0 && rerr != io.ErrUnexpectedEOF) {
				t.Fatalf("ParseUDPFrame says short, ReadUDPFrame says %v", rerr)
			}
		default:
			if !errors.Is(rerr, trojan.ErrInvalid) && rerr != io.ErrUnexpectedEOF {
				t.Fatalf("ParseUDPFrame says %v, ReadUDPFrame says %v", err, rerr)
			}
		}
		if err != nil {
			return
		}
		if len(p) > 0 && &p[len(p)-1] != &b[n-1] {
			t.Fatal("payload does not alias the input")
		}
		enc, err := trojan.AppendUDPFrame(nil, dst, p)
		if err != nil {
			t.Fatalf("parsed %#v but cannot encode it: %v", dst, err)
		}
		if !bytes.Equal(enc, b[:n]) {
			t.Fatalf("re-encoding gives %x, input was %x", enc, b[:n])
		}
	})
}
