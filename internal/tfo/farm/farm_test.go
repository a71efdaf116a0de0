package farm

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fastrojan/fastrojan/internal/config"
)

const testSecret = "farm-test-secret-0123456789abcdef"

func mustFarm(t testing.TB, secret string, interval, skew time.Duration) *Farm {
	t.Helper()
	f, err := New([]byte(secret), interval, skew)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// rfc5869 is HKDF-SHA-256 written out from RFC 5869 with crypto/hmac, independently of crypto/hkdf,
// so the test pins the documented derivation rather than whatever the code happens to call.
func rfc5869(secret []byte, info string, n int) []byte {
	ext := hmac.New(sha256.New, make([]byte, sha256.Size)) // no salt: HashLen zero bytes
	ext.Write(secret)
	prk := ext.Sum(nil)
	var out, prev []byte
	for i := byte(1); len(out) < n; i++ {
		m := hmac.New(sha256.New, prk)
		m.Write(prev)
		m.Write([]byte(info))
		m.Write([]byte{i})
		prev = m.Sum(nil)
		out = append(out, prev...)
	}
	return out[:n]
}

// TestFarmKeyDerivation: keys are HKDF-SHA-256 of the secret with the documented info string, so any
// node (or another implementation) derives the same ones; they differ per epoch, secret and interval.
func TestFarmKeyDerivation(t *testing.T) {
	f := mustFarm(t, testSecret, 24*time.Hour, time.Minute)
	for _, e := range []int64{0, 1, 20415, 1 << 40} {
		want := rfc5869([]byte(testSecret), fmt.Sprintf("fastrojan tfo cookie key v1 interval=86400 epoch=%d", e), 16)
		if got := f.Key(e); !bytes.Equal(got[:], want) {
			t.Errorf("Key(%d) = %x, want HKDF-SHA-256 %x", e, got, want)
		}
	}
	again := mustFarm(t, testSecret, 24*time.Hour, 5*time.Minute) // skew does not enter the keys
	other := mustFarm(t, testSecret+"x", 24*time.Hour, time.Minute)
	hourly := mustFarm(t, testSecret, time.Hour, time.Minute)
	if f.Key(7) != again.Key(7) {
		t.Error("two farms with the same secret and interval derive different keys")
	}
	if f.Key(7) == f.Key(8) || f.Key(7) == other.Key(7) || f.Key(7) == hourly.Key(7) {
		t.Error("keys do not differ across epochs, secrets or intervals")
	}
	if f.Key(7).Fingerprint() != again.Key(7).Fingerprint() || f.Key(7).Fingerprint() == f.Key(8).Fingerprint() {
		t.Error("fingerprints do not follow the keys")
	}
}

func TestFarmEpochs(t *testing.T) {
	f := mustFarm(t, testSecret, 24*time.Hour, time.Minute)
	at := time.Date(2026, 11, 23, 4, 13, 0, 0, time.UTC)
	e := f.Epoch(at)
	if want := at.Unix() / 86400; e != want {
		t.Fatalf("Epoch = %d, want %d", e, want)
	}
	if got := f.EpochStart(e); !got.Equal(time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("EpochStart = %v", got)
	}
	if got := f.NextRotation(at); !got.Equal(time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("NextRotation = %v", got)
	}
	b := f.EpochStart(e + 1)
	if f.Epoch(b.Add(-time.Nanosecond)) != e || f.Epoch(b) != e+1 {
		t.Error("the boundary is not where the epoch changes")
	}
	// Before 1970 epochs are negative and still floor.
	if got := f.Epoch(time.Unix(-1, 0)); got != -1 {
		t.Errorf("Epoch(-1s) = %d, want -1", got)
	}
	if got := f.KeysAt(at); got.Epoch != e || got.BackupEpoch != e-1 || got.Primary != f.Key(e) || got.Backup != f.Key(e-1) {
		t.Errorf("mid-epoch keys: epoch %d backup %d", got.Epoch, got.BackupEpoch)
	}
	if got := f.KeysAt(b.Add(-2 * time.Minute)); got.Epoch != e || got.BackupEpoch != e+1 {
		t.Errorf("2·skew before the boundary: epoch %d backup %d, want %d and %d", got.Epoch, got.BackupEpoch, e, e+1)
	}
}

func TestFarmNewRejects(t *testing.T) {
	cases := []struct {
		secret         string
		interval, skew time.Duration
		want           string
	}{
		{"short", time.Hour, time.Minute, "need at least 16"},
		{testSecret, 0, 0, "whole number of seconds"},
		{testSecret, 1500 * time.Millisecond, 0, "whole number of seconds"},
		{testSecret, time.Hour, -time.Second, "negative"},
		{testSecret, 4 * time.Minute, time.Minute + time.Second, "at least 4 × the clock skew"},
	}
	for _, c := range cases {
		if _, err := New([]byte(c.secret), c.interval, c.skew); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%q, %v, %v): %v, want an error containing %q", c.secret, c.interval, c.skew, err, c.want)
		}
	}
}

// TestFarmSysctlWordOrder: the sysctl's text is four little-endian 32-bit words per key, and ParseSysctl
// reads it back.
func TestFarmSysctlWordOrder(t *testing.T) {
	var ks KeySet
	for i := range ks.Primary {
		ks.Primary[i] = byte(i * 0x11)
		ks.Backup[i] = byte(0xf0 - i)
	}
	// Bytes 00 11 22 33 are the word 0x33221100 (DESIGN.md 3.3, kernel sysctl_net_ipv4.c).
	want := "33221100-77665544-bbaa9988-ffeeddcc,edeeeff0-e9eaebec-e5e6e7e8-e1e2e3e4"
	if got := ks.SysctlValue(); got != want {
		t.Errorf("SysctlValue = %s\nwant          %s", got, want)
	}
	if got := ks.SysctlLine(); got != "net.ipv4.tcp_fastopen_key="+want {
		t.Errorf("SysctlLine = %s", got)
	}
	keys, err := ParseSysctl(want + "\n")
	if err != nil || len(keys) != 2 || keys[0] != ks.Primary || keys[1] != ks.Backup {
		t.Errorf("ParseSysctl(SysctlValue) = %x, %v", keys, err)
	}
	if b := ks.Bytes(); !bytes.Equal(b[:16], ks.Primary[:]) || !bytes.Equal(b[16:], ks.Backup[:]) {
		t.Errorf("Bytes = %x, want primary then backup", b)
	}
	// The kernel also prints a namespace that never had a key as zeros, and accepts short words.
	if keys, err := ParseSysctl("0-1-2-3"); err != nil || len(keys) != 1 || keys[0][4] != 1 || keys[0][12] != 3 {
		t.Errorf("ParseSysctl(0-1-2-3) = %x, %v", keys, err)
	}
	for _, bad := range []string{"", "1-2-3", "1-2-3-4-5", "1-2-3-g", "1-2-3-123456789", "1-2-3-4,1-2-3-4,1-2-3-4", "1--2-3"} {
		if _, err := ParseSysctl(bad); err == nil {
			t.Errorf("ParseSysctl(%q) accepted", bad)
		}
	}
}

func FuzzParseSysctl(f *testing.F) {
	f.Add("33221100-77665544-bbaa9988-ffeeddcc,edeeeff0-e9eaebec-e5e6e7e8-e1e2e3e4")
	f.Add("00000000-00000000-00000000-00000000")
	f.Add("1-2-3-4")
	f.Add("a-b-c-d,e-f-0-1\n")
	f.Add(",")
	f.Fuzz(func(t *testing.T, s string) {
		keys, err := ParseSysctl(s)
		if err != nil {
			return
		}
		if len(keys) < 1 || len(keys) > 2 {
			t.Fatalf("ParseSysctl(%q) returned %d keys", s, len(keys))
		}
		// What parses prints in canonical form and parses to the same keys.
		var words []string
		for _, k := range keys {
			words = append(words, k.sysctlWords())
		}
		again, err := ParseSysctl(strings.Join(words, ","))
		if err != nil || len(again) != len(keys) {
			t.Fatalf("canonical form of %q does not parse: %v", s, err)
		}
		for i := range keys {
			if again[i] != keys[i] {
				t.Fatalf("round trip of %q changed key %d", s, i)
			}
		}
	})
}

// schedule is KeysAt without deriving keys (the grid below evaluates it millions of times); keys of
// distinct epochs differ (TestFarmKeyDerivation), and KeysAt uses exactly these epochs
// (TestRotationScheduleExhaustive checks that on part of the grid).
type schedule struct{ primary, backup int64 }

func scheduleAt(f *Farm, t time.Time) schedule {
	p, b := f.epochsAt(t)
	return schedule{p, b}
}

func (s schedule) accepts(e int64) bool { return s.primary == e || s.backup == e }

// TestRotationScheduleExhaustive checks the package doc's argument on a fine grid of true times around
// a boundary and of clock offsets within ±skew: whatever node issues a cookie, every other node
// accepts it at that moment and for MinCookieLifetime afterwards. With offsets beyond the tolerance
// the same check finds a refusal, so it can fail.
func TestRotationScheduleExhaustive(t *testing.T) {
	schedules := []struct{ interval, skew time.Duration }{
		{24 * time.Hour, time.Minute},  // the defaults
		{4 * time.Minute, time.Minute}, // the tightest allowed
		{time.Hour, 7*time.Minute + 300*time.Millisecond},
		{time.Minute, 0},
		{10 * time.Second, 2*time.Second + 500*time.Millisecond},
	}
	for _, s := range schedules {
		f := mustFarm(t, testSecret, s.interval, s.skew)
		base := f.EpochStart(f.Epoch(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)) + 1)
		offsets := []time.Duration{-s.skew, s.skew}
		for i := 1; i < 16; i++ {
			offsets = append(offsets, -s.skew+time.Duration(i)*s.skew/8)
		}
		// True times: a grid over [b − 4·skew − margin, b + 4·skew + margin] plus the exact instants
		// where some node's schedule changes, and a nanosecond either side.
		var times []time.Time
		span := 4*s.skew + s.interval/8
		step := max(span/1000, time.Millisecond)
		for d := -span; d <= span; d += step {
			times = append(times, base.Add(d))
		}
		for _, off := range offsets {
			for _, edge := range []time.Time{base, base.Add(-2 * s.skew)} {
				for _, eps := range []time.Duration{-time.Nanosecond, 0, time.Nanosecond} {
					times = append(times, edge.Add(-off+eps))
				}
			}
		}
		life := f.MinCookieLifetime() - time.Nanosecond // the guarantee is strict
		if life < 0 {
			life = 0
		}
		for i, T := range times {
			if i%50 == 0 { // the schedule is the keys
				ks := f.KeysAt(T)
				if s := scheduleAt(f, T); ks.Primary != f.Key(s.primary) || ks.Backup != f.Key(s.backup) {
					t.Fatalf("KeysAt(%v) does not hold the keys of epochs %d and %d", T, s.primary, s.backup)
				}
			}
		}
		checked, violations := 0, 0
		for _, T := range times {
			for _, di := range offsets {
				issued := scheduleAt(f, T.Add(di)).primary
				for _, dj := range offsets {
					checked += 2
					if !scheduleAt(f, T.Add(dj)).accepts(issued) {
						violations++
						if violations < 5 {
							t.Errorf("%v/%v: cookie issued at T=%v by a node %+v off is refused by a node %+v off",
								s.interval, s.skew, T.Sub(base), di, dj)
						}
					}
					if !scheduleAt(f, T.Add(dj+life)).accepts(issued) {
						violations++
						if violations < 5 {
							t.Errorf("%v/%v: cookie issued at T=%v by a node %+v off is refused %v later by a node %+v off",
								s.interval, s.skew, T.Sub(base), di, life, dj)
						}
					}
				}
			}
		}
		if violations > 0 {
			t.Errorf("%v/%v: %d of %d checks failed", s.interval, s.skew, violations, checked)
		}
		t.Logf("%v/%v: %d checks", s.interval, s.skew, checked)

		// Beyond the tolerance (clocks 2.5·skew apart) some cookie is refused at the moment it is issued.
		if s.skew > 0 {
			refused := false
			for _, T := range times {
				if !scheduleAt(f, T.Add(-5*s.skew/4)).accepts(scheduleAt(f, T.Add(5*s.skew/4)).primary) {
					refused = true
					break
				}
			}
			if !refused {
				t.Errorf("%v/%v: clocks 2.5 × skew apart never disagree; the grid cannot see a violation", s.interval, s.skew)
			}
		}
	}
}

// TestRotationNextChange: KeysAt is constant from t up to NextChange(t) and differs there.
func TestRotationNextChange(t *testing.T) {
	f := mustFarm(t, testSecret, time.Hour, 90*time.Second)
	start := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	for d := time.Duration(0); d < 3*time.Hour; d += 97 * time.Second {
		now := start.Add(d)
		next := f.NextChange(now)
		if !next.After(now) || next.Sub(now) > f.Interval() {
			t.Fatalf("NextChange(%v) = %v", now, next)
		}
		ks := f.KeysAt(now)
		if f.KeysAt(next.Add(-time.Nanosecond)) != ks {
			t.Errorf("keys change before NextChange(%v) = %v", now, next)
		}
		if f.KeysAt(next) == ks {
			t.Errorf("keys do not change at NextChange(%v) = %v", now, next)
		}
	}
}

func TestFarmStringHidesSecret(t *testing.T) {
	f := mustFarm(t, testSecret, time.Hour, time.Minute)
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "farm", f, "value", *f)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "farm", f, "value", *f)
	out := fmt.Sprintf("%v %+v %#v %s %v %+v %#v", f, f, f, f, *f, *f, *f) + buf.String()
	if strings.Contains(out, testSecret) || strings.Contains(out, hex.EncodeToString([]byte(testSecret))) {
		t.Errorf("the secret shows in %s", out)
	}
	if !strings.Contains(out, "farm(rotation 1h0m0s, skew 1m0s)") {
		t.Errorf("String = %s", f)
	}
}

func TestFarmSecretFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "farm.key")
	if err := NewSecretFile(path); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm() != 0o600 {
		t.Errorf("new secret file has mode %v, want 0600", st.Mode().Perm())
	}
	secret, err := LoadSecret(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(secret) != 64 {
		t.Errorf("new secret is %d characters, want 64 hex", len(secret))
	}
	if _, err := hex.DecodeString(string(secret)); err != nil {
		t.Errorf("new secret is not hex: %v", err)
	}
	if err := NewSecretFile(path); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("NewSecretFile over an existing file: %v", err)
	}
	if again, _ := LoadSecret(path); !bytes.Equal(again, secret) {
		t.Error("NewSecretFile changed an existing file")
	}
	// Two secrets in a row differ.
	other := filepath.Join(dir, "other.key")
	if err := NewSecretFile(other); err != nil {
		t.Fatal(err)
	}
	if s2, _ := LoadSecret(other); bytes.Equal(s2, secret) {
		t.Error("two new secrets are equal")
	}

	// Surrounding white space is not part of the secret.
	spaced := filepath.Join(dir, "spaced.key")
	if err := os.WriteFile(spaced, []byte("\n  "+testSecret+" \r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := LoadSecret(spaced); err != nil || string(s) != testSecret {
		t.Errorf("LoadSecret trimmed to %q, %v", s, err)
	}
	empty := filepath.Join(dir, "empty.key")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSecret(empty); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty secret file: %v", err)
	}

	if runtime.GOOS == "windows" {
		return
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660, 0o644} {
		if err := os.Chmod(spaced, mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadSecret(spaced)
		if err == nil || !strings.Contains(err.Error(), "accessible to group or others") || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %v: %v, want a refusal that says chmod 600", mode, err)
		}
		if err != nil && strings.Contains(err.Error(), testSecret) {
			t.Errorf("the refusal shows the secret: %v", err)
		}
	}
	if err := os.Chmod(spaced, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSecret(spaced); err != nil {
		t.Errorf("mode 0400: %v", err)
	}
}

func TestFarmFromConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "farm.key")
	if err := os.WriteFile(path, []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	def := config.DefaultFarm()
	if _, err := FromConfig(def); !errors.Is(err, ErrNoSecret) {
		t.Errorf("no secret: %v, want ErrNoSecret", err)
	}
	if !strings.Contains(ErrNoSecret.Error(), "behind one address") {
		t.Errorf("ErrNoSecret does not say why a farm needs a secret: %v", ErrNoSecret)
	}
	fromFile := def
	fromFile.SecretFile = path
	inline := def
	inline.Secret = testSecret
	a, err := FromConfig(fromFile)
	if err != nil {
		t.Fatal(err)
	}
	b, err := FromConfig(inline)
	if err != nil {
		t.Fatal(err)
	}
	if a.Key(1) != b.Key(1) || a.Interval() != 24*time.Hour || a.Skew() != time.Minute {
		t.Error("a secret file and the same secret inline give different farms")
	}
	both := fromFile
	both.Secret = testSecret
	if _, err := FromConfig(both); err == nil {
		t.Error("secret and secret_file together accepted")
	}
}

// --- Rotator ---

// fakeClock is a Clock that moves only when told to.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{now: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) At(t time.Time) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if !t.After(c.now) {
		ch <- c.now
	} else {
		c.waiters = append(c.waiters, fakeWaiter{t, ch})
	}
	return ch
}

// Set moves the clock to t and wakes the waiters whose time has come.
func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(t) {
			kept = append(kept, w)
		} else {
			w.ch <- t
		}
	}
	c.waiters = kept
}

// recorder stands in for SetKeys: it records what each listener was given.
type recorder struct {
	mu   sync.Mutex
	sets map[syscall.Conn][]KeySet
	fail error
}

func (r *recorder) set(ln syscall.Conn, ks KeySet) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	if r.sets == nil {
		r.sets = map[syscall.Conn][]KeySet{}
	}
	r.sets[ln] = append(r.sets[ln], ks)
	return nil
}

func (r *recorder) last(ln syscall.Conn) (KeySet, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sets[ln]
	if len(s) == 0 {
		return KeySet{}, 0
	}
	return s[len(s)-1], len(s)
}

// fakeListener is a syscall.Conn the recorder can tell apart.
type fakeListener struct{ name string }

func (*fakeListener) SyscallConn() (syscall.RawConn, error) { return nil, errors.ErrUnsupported }

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRotationRotatorFollowsClock: the Rotator sets the keys at once, announces the next key 2·skew
// before the boundary, promotes it at the boundary, switches secrets on SetFarm, never logs a key or
// the secret, and leaves no goroutine after Close.
func TestRotationRotatorFollowsClock(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	f := mustFarm(t, testSecret, time.Hour, time.Minute)
	b := f.EpochStart(f.Epoch(time.Date(2026, 11, 23, 12, 30, 0, 0, time.UTC)) + 1)
	e := f.Epoch(b)
	clock := newFakeClock(b.Add(-10 * time.Minute))
	rec := &recorder{}
	l1, l2 := &fakeListener{"a"}, &fakeListener{"b"}
	var logs bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))
	r, err := newRotator(f, []syscall.Conn{l1, l2}, RotatorOptions{Clock: clock, Logger: log}, rec.set)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	check := func(what string, wantEpoch, wantBackup int64, fa *Farm) {
		t.Helper()
		want := KeySet{Epoch: wantEpoch, Primary: fa.Key(wantEpoch), BackupEpoch: wantBackup, Backup: fa.Key(wantBackup)}
		waitFor(t, what, func() bool {
			k1, _ := rec.last(l1)
			k2, _ := rec.last(l2)
			return k1 == want && k2 == want && r.Current() == want
		})
		if r.Epoch() != wantEpoch {
			t.Errorf("%s: Epoch() = %d, want %d", what, r.Epoch(), wantEpoch)
		}
	}
	check("initial keys", e-1, e-2, f)
	_, n0 := rec.last(l1)

	clock.Set(b.Add(-2*time.Minute - time.Second))
	time.Sleep(20 * time.Millisecond) // give a wrong wake-up the chance to happen
	if _, n := rec.last(l1); n != n0 {
		t.Errorf("keys set %d more times before any change was due", n-n0)
	}
	clock.Set(b.Add(-2 * time.Minute))
	check("next key announced 2·skew before the boundary", e-1, e, f)
	clock.Set(b)
	check("next key promoted at the boundary", e, e-1, f)

	// A jump far ahead (a stepped clock) is caught up with.
	clock.Set(b.Add(5*time.Hour + 30*time.Minute))
	check("after a clock step", e+5, e+4, f)

	// SIGHUP: a new secret takes effect at once.
	g := mustFarm(t, testSecret+"-rotated", time.Hour, time.Minute)
	if err := r.SetFarm(g); err != nil {
		t.Fatal(err)
	}
	check("after SetFarm", e+5, e+4, g)
	clock.Set(b.Add(6 * time.Hour))
	check("the new farm's schedule", e+6, e+5, g)

	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	logMu.Lock()
	out := logs.String()
	logMu.Unlock()
	if !strings.Contains(out, "TFO farm keys set") || !strings.Contains(out, f.Key(e).Fingerprint()) {
		t.Errorf("the log does not show the key changes by fingerprint:\n%s", out)
	}
	for _, fa := range []*Farm{f, g} {
		for ep := e - 2; ep <= e+6; ep++ {
			k := fa.Key(ep)
			ks := KeySet{Primary: k, Backup: k}
			for _, leak := range []string{hex.EncodeToString(k[:]), ks.Primary.sysctlWords(), string(fa.secret)} {
				if strings.Contains(out, leak) {
					t.Fatalf("the log shows key material (%s):\n%s", leak, out)
				}
			}
		}
	}
}

// TestRotationRotatorErrors: keys that cannot be set stop NewRotator (nothing left running); a
// failure later is retried.
func TestRotationRotatorErrors(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	f := mustFarm(t, testSecret, time.Hour, time.Minute)
	rec := &recorder{fail: errors.New("boom")}
	ln := &fakeListener{"a"}
	if _, err := newRotator(f, []syscall.Conn{ln}, RotatorOptions{Logger: discard()}, rec.set); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("NewRotator with failing listeners: %v", err)
	}

	clock := newFakeClock(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC))
	rec.fail = nil
	r, err := newRotator(f, []syscall.Conn{ln}, RotatorOptions{Clock: clock, Logger: discard()}, rec.set)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rec.mu.Lock()
	rec.fail = errors.New("listener gone")
	rec.mu.Unlock()
	g := mustFarm(t, testSecret+"-2", time.Hour, time.Minute)
	if err := r.SetFarm(g); err == nil {
		t.Fatal("SetFarm with a failing listener reported success")
	}
	rec.mu.Lock()
	rec.fail = nil
	rec.mu.Unlock()
	clock.Set(clock.Now().Add(maxWait)) // the retry comes within maxWait
	want := g.KeysAt(clock.Now())
	waitFor(t, "the retry", func() bool { k, _ := rec.last(ln); return k == want })
}

// TestFarmSetKeysUnsupportedElsewhere runs everywhere; off Linux SetKeys must say it is unsupported.
func TestFarmSetKeysUnsupportedElsewhere(t *testing.T) {
	if runtime.GOOS == "linux" {
		t.Skip("SetKeys is implemented on Linux; the lab tests cover it")
	}
	err := SetKeys(&fakeListener{}, KeySet{})
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("SetKeys on %s: %v, want errors.ErrUnsupported", runtime.GOOS, err)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
