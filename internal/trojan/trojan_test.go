//lint:file-ignore S1025 TestHashIsRedactedEverywhere checks what each fmt verb shows, %s included

package trojan_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"github.com/fastrojan/fastrojan/internal/trojan"
)

// pwHex is SHA224("password") in hex, computed independently (sha224sum) and pinned here.
const pwHex = "d63dc919e201d7bc4c825630d2cf25fdc93d4b2f0d46706d29038d01"

func TestHashPasswordPinnedVector(t *testing.T) {
	h := trojan.HashPassword("password")
	if got := string(h[:]); got != pwHex {
		t.Fatalf("HashPassword(\"password\") = %q, want %q", got, pwHex)
	}
	if h.Hex() != pwHex {
		t.Fatalf("Hex() = %q, want %q", h.Hex(), pwHex)
	}
}

func TestHashPasswordMatchesSHA224(t *testing.T) {
	for _, pw := range []string{"", "password", "correct horse battery staple", "пароль", strings.Repeat("x", 1000)} {
		sum := sha256.Sum224([]byte(pw))
		want := hex.EncodeToString(sum[:])
		h := trojan.HashPassword(pw)
		if h.Hex() != want {
			t.Errorf("HashPassword(%q) = %q, want %q", pw, h.Hex(), want)
		}
		if !trojan.HashPrefixValid(h[:]) {
			t.Errorf("HashPassword(%q) is not lowercase hex", pw)
		}
	}
}

func TestParseHash(t *testing.T) {
	want := trojan.HashPassword("password")
	for _, s := range []string{pwHex, strings.ToUpper(pwHex), "D63DC919e201d7bc4c825630d2cf25fdc93d4b2f0d46706d29038d01"} {
		h, err := trojan.ParseHash(s)
		if err != nil {
			t.Fatalf("ParseHash(%q): %v", s, err)
		}
		if h != want {
			t.Fatalf("ParseHash(%q) = %s, want the hash of \"password\"", s, h.Hex())
		}
	}
	bad := []string{
		"",
		pwHex[:55],
		pwHex + "0",
		pwHex[:55] + "g",
		" " + pwHex[1:],
		pwHex[:20] + "\r" + pwHex[21:],
		pwHex[:10] + "é" + pwHex[12:], // two bytes, so the length still matches
	}
	for _, s := range bad {
		_, err := trojan.ParseHash(s)
		if !errors.Is(err, trojan.ErrInvalid) {
			t.Errorf("ParseHash(%q) error = %v, want ErrInvalid", s, err)
			continue
		}
		if len(s) > 8 && strings.Contains(err.Error(), s[:8]) {
			t.Errorf("ParseHash error %q repeats the input", err)
		}
	}
}

func TestHashIsRedactedEverywhere(t *testing.T) {
	h := trojan.HashPassword("password")
	secret := pwHex[6:] // anything past the first 6 digits must never show up
	if got, want := h.String(), pwHex[:6]+"…"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	outputs := map[string]string{
		"%v":         fmt.Sprintf("%v", h),
		"%s":         fmt.Sprintf("%s", h),
		"%+v":        fmt.Sprintf("%+v", h),
		"%#v":        fmt.Sprintf("%#v", h),
		"%x":         fmt.Sprintf("%x", h),
		"%q":         fmt.Sprintf("%q", h),
		"struct %+v": fmt.Sprintf("%+v", trojan.Request{Hash: h}),
		"struct %#v": fmt.Sprintf("%#v", trojan.Request{Hash: h}),
	}
	for name, newHandler := range map[string]func(*bytes.Buffer) slog.Handler{
		"slog text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		"slog json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	} {
		var buf bytes.Buffer
		slog.New(newHandler(&buf)).Info("auth", "user", h, "req", trojan.Request{Hash: h})
		outputs[name] = buf.String()
	}
	js, err := json.Marshal(trojan.Request{Hash: h})
	if err != nil {
		t.Fatal(err)
	}
	outputs["json"] = string(js)
	var dec []string // the secret part as decimal bytes, as encoding/json prints a byte array
	for _, c := range []byte(secret[:8]) {
		dec = append(dec, strconv.Itoa(int(c)))
	}
	for name, out := range outputs {
		if strings.Contains(out, secret) || strings.Contains(out, hex.EncodeToString([]byte(secret))) ||
			strings.Contains(out, strings.Join(dec, ",")) || strings.Contains(out, strings.Join(dec, " ")) {
			t.Errorf("%s leaks the hash: %s", name, out)
		}
	}
	if !strings.Contains(outputs["slog json"], pwHex[:6]) {
		t.Errorf("slog json output lacks the redacted prefix: %s", outputs["slog json"])
	}
	if s := (trojan.Hash{}).String(); strings.ContainsRune(s, 0) {
		t.Errorf("zero Hash String() = %q contains NUL bytes", s)
	}
}

func TestCommandString(t *testing.T) {
	for c, want := range map[trojan.Command]string{
		trojan.CmdConnect:      "CONNECT",
		trojan.CmdUDPAssociate: "UDP_ASSOCIATE",
		0x02:                   "Command(0x02)",
		0x7e:                   "Command(0x7e)",
		trojan.CmdMux:          "MUX",
	} {
		if got := c.String(); got != want {
			t.Errorf("Command(%d).String() = %q, want %q", byte(c), got, want)
		}
	}
	if byte(trojan.CmdConnect) != 0x01 || byte(trojan.CmdUDPAssociate) != 0x03 {
		t.Fatal("command values differ from trojan-gfw's protocol.md")
	}
}
