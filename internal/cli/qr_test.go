package cli

import (
	"strings"
	"testing"

	"rsc.io/qr"

	"github.com/fastrojan/fastrojan/internal/config"
)

// TestQRMatchesTheLink reads the printed half blocks back into modules and compares them with the
// QR code of the link.
func TestQRMatchesTheLink(t *testing.T) {
	link := config.TrojanLink{Password: "0123456789abcdef0123456789abcdef", Host: "proxy.example.com", Port: 443, SNI: "proxy.example.com", Name: "fastrojan"}.String()
	var b strings.Builder
	printQR(&b, link)
	code, err := qr.Encode(link, qr.L)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(b.String(), "\n")
	for y := range code.Size {
		line := []rune(lines[1+y/2]) // one line of quiet zone on top
		for x := range code.Size {
			c := string(line[qrQuietZone+x])
			top := y%2 == 0
			black := c == " " || (c == "▄" && top) || (c == "▀" && !top)
			if black != code.Black(x, y) {
				t.Fatalf("module (%d,%d): printed %q, want black=%v", x, y, c, code.Black(x, y))
			}
		}
	}
}
