package trojan_test

import (
	"bytes"
	"testing"

	"github.com/fastrojan/fastrojan/internal/trojan"
)

func BenchmarkParseRequest(b *testing.B) {
	for _, v := range requestVectors[:3] { // ipv4, ipv6, domain
		in := []byte(v.wire + "GET / HTTP/1.1\r\n\r\n")
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(v.wire)))
			for b.Loop() {
				if _, _, err := trojan.ParseRequest(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("probe", func(b *testing.B) { // the fallback path: an HTTP request, refused at byte 0
		in := []byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := trojan.ParseRequest(in); err == nil {
				b.Fatal("accepted a probe")
			}
		}
	})
}

func BenchmarkAppendRequest(b *testing.B) {
	for _, v := range requestVectors[:3] {
		b.Run(v.name, func(b *testing.B) {
			buf := make([]byte, 0, trojan.MaxRequestLen)
			b.ReportAllocs()
			b.SetBytes(int64(len(v.wire)))
			for b.Loop() {
				if _, err := trojan.AppendRequest(buf[:0], v.r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParseUDPFrame(b *testing.B) {
	in := []byte(udpVectors[0].wire)
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, _, _, err := trojan.ParseUDPFrame(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadUDPFrame(b *testing.B) {
	frame := []byte(udpVectors[0].wire)
	r := bytes.NewReader(frame)
	buf := make([]byte, trojan.MaxUDPPayload)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		r.Reset(frame)
		if _, _, err := trojan.ReadUDPFrame(r, buf); err != nil {
			b.Fatal(err)
		}
	}
}
