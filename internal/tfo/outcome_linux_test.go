package tfo

import "testing"

func TestClientOutcomeFromTCPInfo(t *testing.T) {
	for _, tc := range []struct {
		options, fail byte
		want          Outcome
	}{
		{tcpiOptSYNData, 0, Accepted},
		{tcpiOptSYNData | 0x07, 0, Accepted}, // with timestamps, SACK, window scaling
		{0x07, 1, CookieRequested},
		{0x07, 2, DataNotAccepted},
		{0x07, 3, SYNDataDropped},
		{0x07, 0, NotAttempted},
	} {
		if got := clientOutcome(tc.options, tc.fail); got != tc.want {
			t.Errorf("options %#x fail %d: %s, want %s", tc.options, tc.fail, got, tc.want)
		}
	}
}

func TestFailBits(t *testing.T) {
	if bigEndian {
		t.Skip("bit-field layout checked on little-endian machines only")
	}
	// tcpi_delivery_rate_app_limited is bit 0, tcpi_fastopen_client_fail bits 1-2.
	for b, want := range map[byte]byte{0b000: 0, 0b001: 0, 0b010: 1, 0b100: 2, 0b110: 3, 0b111: 3, 0xf8: 0} {
		if got := failBits(b); got != want {
			t.Errorf("failBits(%#b) = %d, want %d", b, got, want)
		}
	}
}
