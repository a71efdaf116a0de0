package doctor

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// KernelCheck reports the kernel version and which TFO features it has.
type KernelCheck struct {
	// Release overrides the kernel release (tests); empty reads uname.
	Release string
}

// Name implements Check.
func (KernelCheck) Name() string { return "kernel" }

// Run implements Check.
func (k KernelCheck) Run(_ context.Context, out *Out) error {
	rel := k.Release
	if rel == "" {
		var err error
		if rel, err = kernelRelease(); err != nil {
			return err
		}
	}
	major, minor, ok := parseRelease(rel)
	if !ok {
		out.Logf("Linux %s (version not understood; assuming a current kernel)", rel)
		return nil
	}
	at := func(ma, mi int) bool { return major > ma || major == ma && minor >= mi }
	out.Logf("Linux %s", rel)
	const upgrade = "upgrade to a Linux kernel ≥ 5.5 (for example your distribution's current kernel package)"
	switch {
	case !at(3, 7):
		out.Problem(Fail, upgrade, "kernel %d.%d has no TCP Fast Open server support (needs ≥ 3.7)", major, minor)
		return nil
	case !at(4, 11):
		out.Problem(Fail, upgrade, "kernel %d.%d lacks TCP_FASTOPEN_CONNECT (≥ 4.11), which fastrojan's client uses to put the TLS ClientHello in the SYN", major, minor)
		return nil
	}
	out.Logf("TFO client (TCP_FASTOPEN_CONNECT) and server (TCP_FASTOPEN): yes")
	if at(5, 3) {
		out.Logf("TCP_FASTOPEN_KEY with a backup key (farm key rotation): yes")
	} else {
		out.Problem(Warn, upgrade, "kernel %d.%d takes one TCP_FASTOPEN_KEY only (backup keys need ≥ 5.3): rotating a farm's key makes cookies fail once", major, minor)
	}
	if at(5, 5) {
		out.Logf("per-connection failure reason (tcpi_fastopen_client_fail): yes")
	} else {
		out.Problem(Note, upgrade, "kernel %d.%d does not say why a TFO attempt failed (tcpi_fastopen_client_fail needs ≥ 5.5): outcomes other than accepted read as not attempted", major, minor)
	}
	if at(6, 16) {
		out.Logf("server marks TFO children (TCPI_OPT_TFO_CHILD): yes")
	}
	if at(5, 14) {
		out.Logf("kernel blackhole detection is off by default since 5.14; fastrojan watches each server itself")
	}
	return nil
}

// parseRelease reads "6.18.0-1-amd64" as 6, 18.
func parseRelease(rel string) (major, minor int, ok bool) {
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	m := parts[1]
	if i := strings.IndexFunc(m, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		m = m[:i]
	}
	minor, err2 := strconv.Atoi(m)
	return major, minor, err1 == nil && err2 == nil
}

// describeTFOBits names the bits of a net.ipv4.tcp_fastopen value.
func describeTFOBits(v int) string {
	on := func(bit int) string {
		if v&bit != 0 {
			return "on"
		}
		return "off"
	}
	s := fmt.Sprintf("client (0x1) %s, server (0x2) %s, client without cookie (0x4) %s, server without cookie (0x200) %s, all listeners (0x400) %s",
		on(0x1), on(0x2), on(0x4), on(0x200), on(0x400))
	if rest := v &^ (0x1 | 0x2 | 0x4 | 0x200 | 0x400); rest != 0 {
		s += fmt.Sprintf(", other bits %#x", rest)
	}
	return s
}
