package cli

import (
	"io"

	"github.com/mdp/qrterminal/v3"
)

// printQR draws s as a QR code with Unicode half blocks (two modules per character cell), light
// modules as full blocks, for a phone's camera to read off a dark terminal.
func printQR(w io.Writer, s string) {
	qrterminal.GenerateWithConfig(s, qrterminal.Config{
		Level:          qrterminal.L,
		Writer:         w,
		HalfBlocks:     true,
		BlackChar:      qrterminal.BLACK_BLACK,
		WhiteBlackChar: qrterminal.WHITE_BLACK,
		WhiteChar:      qrterminal.WHITE_WHITE,
		BlackWhiteChar: qrterminal.BLACK_WHITE,
		QuietZone:      qrQuietZone,
	})
}

const qrQuietZone = 2
