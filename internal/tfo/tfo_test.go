package tfo

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestOutcomeNames(t *testing.T) {
	want := map[Outcome]string{
		NotAttempted: "not_attempted", Accepted: "accepted", CookieRequested: "cookie_requested",
		DataNotAccepted: "data_not_accepted", SYNDataDropped: "syn_data_dropped", Unsupported: "unsupported",
	}
	if len(Outcomes()) != len(want) {
		t.Fatalf("Outcomes() has %d entries, want %d", len(Outcomes()), len(want))
	}
	for _, o := range Outcomes() {
		if o.String() != want[o] {
			t.Errorf("%d.String() = %q, want %q", o, o.String(), want[o])
		}
		if o.Meaning() == "" || o.Meaning() == o.String() {
			t.Errorf("%s has no meaning", o)
		}
	}
	if s := Outcome(200).String(); s != "outcome(200)" {
		t.Errorf("unknown outcome prints %q", s)
	}
}

func TestMaxSYNData(t *testing.T) {
	for addr, want := range map[string]int{
		"198.18.0.2:443": 1420, "198.18.0.2": 1420, "[2001:2::2]:443": 1400, "example.com:443": 1400,
		"[::ffff:1.2.3.4]:443": 1420,
	} {
		if got := MaxSYNData(addr); got != want {
			t.Errorf("MaxSYNData(%q) = %d, want %d", addr, got, want)
		}
	}
}

func TestSysctl(t *testing.T) {
	for _, tc := range []struct {
		v              Sysctl
		client, server bool
		fix            string
	}{
		{0, false, false, "sysctl -w net.ipv4.tcp_fastopen=3"},
		{1, true, false, "sysctl -w net.ipv4.tcp_fastopen=3"},
		{2, false, true, "sysctl -w net.ipv4.tcp_fastopen=3"},
		{3, true, true, "sysctl -w net.ipv4.tcp_fastopen=3"},
		{0x401, true, false, "sysctl -w net.ipv4.tcp_fastopen=1027"}, // keeps the other bits
	} {
		if tc.v.Client() != tc.client || tc.v.Server() != tc.server || tc.v.Fix() != tc.fix {
			t.Errorf("Sysctl(%#x): client %v server %v fix %q", int(tc.v), tc.v.Client(), tc.v.Server(), tc.v.Fix())
		}
	}
}

func TestParseNetstat(t *testing.T) {
	raw := []byte("TcpExt: SyncookiesSent TCPFastOpenActive TCPFastOpenPassive TCPFastOpenCookieReqd\n" +
		"TcpExt: 0 7 5 2\nIpExt: InNoRoutes\nIpExt: 1\n")
	m, err := ParseNetstat(raw, "TcpExt")
	if err != nil {
		t.Fatal(err)
	}
	got := FastOpenCounters(m)
	want := map[string]uint64{"TCPFastOpenActive": 7, "TCPFastOpenPassive": 5, "TCPFastOpenCookieReqd": 2}
	if !maps.Equal(got, want) {
		t.Errorf("FastOpenCounters = %v, want %v", got, want)
	}
	for _, bad := range []string{"", "TcpExt: A B\n", "TcpExt: A B\nTcpExt: 1\n", "TcpExt: A\nTcpExt: x\n", "TcpExt: A\nIpExt: 1\n"} {
		if _, err := ParseNetstat([]byte(bad), "TcpExt"); err == nil {
			t.Errorf("ParseNetstat(%q) succeeded", bad)
		}
	}
}

// FuzzParseNetstat: any bytes (the file is the kernel's, but a parser of outside bytes never panics);
// what parses has one value per name and reads back the same when written out again.
func FuzzParseNetstat(f *testing.F) {
	f.Add([]byte("TcpExt: TCPFastOpenActive TCPFastOpenPassive\nTcpExt: 1 2\n"))
	f.Add([]byte("TcpExt: A\nTcpExt: 18446744073709551615\n"))
	f.Add([]byte("TcpExt: A\nTcpExt: 18446744073709551616\n"))
	f.Add([]byte("IpExt: X\nIpExt: 1\nTcpExt:\nTcpExt:\n"))
	f.Add([]byte("TcpExt: A A\nTcpExt: 1 2\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := ParseNetstat(raw, "TcpExt")
		if err != nil {
			return
		}
		names := slices.Sorted(maps.Keys(m))
		var hdr, vals strings.Builder
		hdr.WriteString("TcpExt:")
		vals.WriteString("TcpExt:")
		for _, n := range names {
			hdr.WriteString(" " + n)
			vals.WriteString(" " + strconv.FormatUint(m[n], 10))
		}
		again, err := ParseNetstat([]byte(hdr.String()+"\n"+vals.String()+"\n"), "TcpExt")
		if err != nil || !maps.Equal(again, m) {
			t.Fatalf("round trip of %v: %v, %v", m, again, err)
		}
	})
}
