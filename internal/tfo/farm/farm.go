package farm

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Defaults of the farm settings.
const (
	DefaultInterval = 24 * time.Hour
	DefaultSkew     = 60 * time.Second
)

// MinSecretLen is the shortest secret accepted, in bytes. `fastrojan keys --new-secret` writes 32
// random bytes (64 hexadecimal characters).
const MinSecretLen = 16

// KeyLen is the length of one TFO key (the kernel's SipHash key).
const KeyLen = 16

// SysctlName is the sysctl that holds a network namespace's TFO keys.
const SysctlName = "net.ipv4.tcp_fastopen_key"

// Key is one TFO cookie key, in the byte order TCP_FASTOPEN_KEY takes.
type Key [KeyLen]byte

// Fingerprint is a short, one-way digest of k (8 hexadecimal digits) for comparing nodes: equal keys
// have equal fingerprints, and a fingerprint does not reveal the key.
func (k Key) Fingerprint() string {
	h := sha256.New()
	h.Write([]byte("fastrojan tfo key fingerprint v1\x00"))
	h.Write(k[:])
	return hex.EncodeToString(h.Sum(nil)[:4])
}

// sysctlWords is k in the sysctl's text form: four 32-bit words, each the little-endian value of four
// key bytes.
func (k Key) sysctlWords() string {
	var b strings.Builder
	for i := range 4 {
		if i > 0 {
			b.WriteByte('-')
		}
		fmt.Fprintf(&b, "%08x", binary.LittleEndian.Uint32(k[4*i:]))
	}
	return b.String()
}

// KeySet is what one listener holds at one moment: the primary key, which makes cookies, and the
// backup key, which only validates them.
type KeySet struct {
	Epoch       int64 // epoch of the primary key
	Primary     Key
	BackupEpoch int64 // Epoch+1 shortly before a rotation, Epoch−1 otherwise
	Backup      Key
}

// Bytes is the 32-byte TCP_FASTOPEN_KEY value: primary then backup.
func (ks KeySet) Bytes() []byte {
	b := make([]byte, 0, 2*KeyLen)
	b = append(b, ks.Primary[:]...)
	return append(b, ks.Backup[:]...)
}

// SysctlValue is the net.ipv4.tcp_fastopen_key value that gives a namespace's listeners (those without
// keys of their own) the same keys: "primary,backup" in the sysctl's word form (see the package doc).
// It contains the keys: treat it as a secret.
func (ks KeySet) SysctlValue() string {
	return ks.Primary.sysctlWords() + "," + ks.Backup.sysctlWords()
}

// SysctlLine is "net.ipv4.tcp_fastopen_key=VALUE", ready for `sysctl -w`. It contains the keys.
func (ks KeySet) SysctlLine() string { return SysctlName + "=" + ks.SysctlValue() }

// ParseSysctl reads a net.ipv4.tcp_fastopen_key value (one key, or primary and backup separated by a
// comma) back into keys.
func ParseSysctl(value string) ([]Key, error) {
	value = strings.TrimSpace(value)
	parts := strings.Split(value, ",")
	if len(parts) > 2 {
		return nil, fmt.Errorf("%s: %d keys, at most 2 (primary,backup)", SysctlName, len(parts))
	}
	keys := make([]Key, len(parts))
	for i, p := range parts {
		words := strings.Split(p, "-")
		if len(words) != 4 {
			return nil, fmt.Errorf("%s: key %d: want 4 hexadecimal words separated by '-', got %q", SysctlName, i+1, p)
		}
		for j, w := range words {
			if w == "" || len(w) > 8 {
				return nil, fmt.Errorf("%s: key %d word %d: want 1 to 8 hexadecimal digits, got %q", SysctlName, i+1, j+1, w)
			}
			v, err := strconv.ParseUint(w, 16, 32)
			if err != nil {
				return nil, fmt.Errorf("%s: key %d word %d: %w", SysctlName, i+1, j+1, err)
			}
			binary.LittleEndian.PutUint32(keys[i][4*j:], uint32(v))
		}
	}
	return keys, nil
}

// Farm derives the keys of a farm from its secret. It is immutable and safe for concurrent use. Its
// String and formatting never show the secret.
type Farm struct {
	secret   []byte
	interval time.Duration
	skew     time.Duration
}

// New returns the farm for secret, rotating keys every interval and tolerating clocks up to skew away
// from true time in either direction. interval must be a whole number of seconds and at least 4·skew
// (see the package doc); a skew of 0 trusts the clocks to agree exactly.
func New(secret []byte, interval, skew time.Duration) (*Farm, error) {
	switch {
	case len(secret) < MinSecretLen:
		return nil, fmt.Errorf("farm secret: %d bytes, need at least %d (generate one with `fastrojan keys --new-secret FILE`)", len(secret), MinSecretLen)
	case interval < time.Second || interval%time.Second != 0:
		return nil, fmt.Errorf("farm rotation interval %v: must be a whole number of seconds, at least 1s", interval)
	case skew < 0:
		return nil, fmt.Errorf("farm clock skew %v: must not be negative", skew)
	case interval < 4*skew:
		return nil, fmt.Errorf("farm rotation interval %v: must be at least 4 × the clock skew tolerance (%v)", interval, 4*skew)
	}
	return &Farm{secret: append([]byte(nil), secret...), interval: interval, skew: skew}, nil
}

// Interval is the rotation interval.
func (f *Farm) Interval() time.Duration { return f.interval }

// Skew is the clock-skew tolerance.
func (f *Farm) Skew() time.Duration { return f.skew }

// MinCookieLifetime is how long after it is issued a cookie is accepted by every node at least:
// Interval − 4·Skew (see the package doc).
func (f *Farm) MinCookieLifetime() time.Duration { return f.interval - 4*f.skew }

// String describes f without its secret (a value receiver, so that neither a Farm nor a *Farm prints
// it).
func (f Farm) String() string {
	return fmt.Sprintf("farm(rotation %v, skew %v)", f.interval, f.skew)
}

// GoString keeps %#v from printing the secret.
func (f Farm) GoString() string { return f.String() }

// Epoch is the epoch t falls in: floor(unix time / Interval).
func (f *Farm) Epoch(t time.Time) int64 {
	e, _ := f.split(t)
	return e
}

// EpochStart is when epoch e begins.
func (f *Farm) EpochStart(e int64) time.Time {
	return time.Unix(e*int64(f.interval/time.Second), 0).UTC()
}

// split returns t's epoch and how far into it t is.
func (f *Farm) split(t time.Time) (int64, time.Duration) {
	sec := int64(f.interval / time.Second)
	s, ns := t.Unix(), int64(t.Nanosecond())
	e := s / sec
	if s%sec < 0 {
		e--
	}
	into := time.Duration(s-e*sec)*time.Second + time.Duration(ns)
	return e, into
}

// window is W: how long before a boundary the next key is announced as backup.
func (f *Farm) window() time.Duration { return 2 * f.skew }

// Key is the key of epoch e.
func (f *Farm) Key(e int64) Key {
	info := fmt.Sprintf("fastrojan tfo cookie key v1 interval=%d epoch=%d", int64(f.interval/time.Second), e)
	b, err := hkdf.Key(sha256.New, f.secret, nil, info, KeyLen)
	if err != nil {
		// hkdf.Key fails only for outputs beyond 255 hash blocks or, in FIPS 140 mode, secrets
		// shorter than 112 bits; New requires 16 bytes and KeyLen is 16.
		panic("farm: hkdf: " + err.Error())
	}
	return Key(b)
}

// KeysAt is what a listener should hold at local time t.
func (f *Farm) KeysAt(t time.Time) KeySet {
	e, backup := f.epochsAt(t)
	return KeySet{Epoch: e, Primary: f.Key(e), BackupEpoch: backup, Backup: f.Key(backup)}
}

// epochsAt is the schedule: the epochs of the primary and backup keys at local time t.
func (f *Farm) epochsAt(t time.Time) (primary, backup int64) {
	e, into := f.split(t)
	if into >= f.interval-f.window() {
		return e, e + 1
	}
	return e, e - 1
}

// NextChange is the first moment after t at which KeysAt gives something else: the announcement of
// the next key (W before the boundary) or the boundary itself.
func (f *Farm) NextChange(t time.Time) time.Time {
	e, into := f.split(t)
	start := f.EpochStart(e)
	if announce := f.interval - f.window(); into < announce {
		return start.Add(announce)
	}
	return start.Add(f.interval)
}

// NextRotation is the next epoch boundary after t, when the primary key changes.
func (f *Farm) NextRotation(t time.Time) time.Time {
	return f.EpochStart(f.Epoch(t) + 1)
}

// ErrNoSecret says that no farm secret is configured. Its text is the advice doctor gives.
var ErrNoSecret = errors.New("no TFO farm secret (fastrojan.farm.secret_file): each server uses its kernel's own cookie key, " +
	"which is fine for one server; behind one address (ECMP, anycast, a load balancer) a client whose flow lands on " +
	"another node has its SYN data refused and loses the round trip TFO saves. Give every node the same secret " +
	"(`fastrojan keys --new-secret FILE`, then copy FILE)")
