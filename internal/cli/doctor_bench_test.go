package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestDoctorCommandUsage(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"run_type": "server", "no_such_key": 1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"doctor", "extra"},
		{"doctor", "--probe", "no-port"},
		{"doctor", "-c", filepath.Join(dir, "missing.json")},
		{"doctor", "-c", bad},
		{"doctor", "--timeout", "0s"},
		{"doctor", "--no-such-flag"},
	} {
		if code, _, stderr := runCLI(t, args...); code != exitUsage || stderr == "" {
			t.Errorf("%v: exit %d, stderr %q; want %d and a message", args, code, stderr, exitUsage)
		}
	}
}

// doctor --json prints a report whose verdict matches the exit status.
func TestDoctorCommandJSON(t *testing.T) {
	code, stdout, stderr := runCLI(t, "doctor", "--json")
	var rep struct {
		Exit    int  `json:"exit"`
		Failed  bool `json:"tfo_cannot_work"`
		Results []struct {
			Check  string `json:"check"`
			Status string `json:"status"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("not JSON (%v): %s\nstderr: %s", err, stdout, stderr)
	}
	if code != rep.Exit || (code == exitFail) != rep.Failed {
		t.Errorf("exit %d, JSON says exit %d, tfo_cannot_work %v", code, rep.Exit, rep.Failed)
	}
	var names []string
	for _, r := range rep.Results {
		names = append(names, r.Check)
	}
	if got := strings.Join(names, ","); got != "kernel,sysctl,counters,cookies,selftest" {
		t.Errorf("checks %s", got)
	}
}

func TestBenchCommandUsage(t *testing.T) {
	for _, args := range [][]string{
		{"bench"},
		{"bench", "--url", "http://x/"},
		{"bench", "--lab", "20ms", "--server", "trojan://pw@h:443"},
		{"bench", "--server", "trojan://pw@h:443"}, // no --url
		{"bench", "--server", "trojan://pw@h:443", "--url", "http://x/", "--lab-fault", "drop-syn-data"},
		{"bench", "--lab", "20ms", "--lab-fault", "eat-packets"},
		{"bench", "--lab", "20ms", "--plot", "out.pdf"},
		{"bench", "--lab", "20ms", "-n", "0"},
		{"bench", "--lab", "20ms", "extra"},
	} {
		if code, _, stderr := runCLI(t, args...); code != exitUsage || !strings.Contains(stderr, "usage:") {
			t.Errorf("%v: exit %d, stderr %q; want %d with usage", args, code, stderr, exitUsage)
		}
	}
}

// bench --warm measures the pool the client config keeps: a config without spares, or with trojan-go
// mux (whose streams do not use the pool), has no warm path to measure, and bench says so instead
// of measuring a pool that client would not have.
func TestBenchCommandWarmFollowsConfig(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct{ extra, want string }{
		"spares 0": {`"fastrojan": {"pool": {"spares": 0}}`, "fastrojan.pool.spares to 0"},
		"mux":      {`"mux": {"enabled": true}`, "mux.enabled"},
	} {
		file := filepath.Join(dir, strings.ReplaceAll(name, " ", "")+".json")
		cfg := `{"run_type": "client", "local_addr": "127.0.0.1", "local_port": 1080, "remote_addr": "192.0.2.1", "remote_port": 443, "password": ["pw"], ` + tc.extra + `}`
		if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		code, _, stderr := runCLI(t, "bench", "-c", file, "--url", "http://192.0.2.2/", "--warm")
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want %d naming %q", name, code, stderr, exitUsage, tc.want)
		}
		if name == "spares 0" && !strings.Contains(stderr, file) {
			t.Errorf("%s: the message does not name the file: %q", name, stderr)
		}
	}
}

// A short bench in the lab from the command line: JSON on stdout, the plot written, progress on
// stderr as plain lines (stderr is not a terminal here).
func TestBenchCommandLab(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("bench --lab needs root (network namespaces); run the tests as root")
	}
	plot := filepath.Join(t.TempDir(), "cdf.svg")
	code, stdout, stderr := runCLI(t, "bench", "--lab", "20ms", "-n", "3", "--json", "--plot", plot)
	if code != exitOK {
		t.Fatalf("exit %d\nstderr: %s", code, stderr)
	}
	var rep struct {
		N   int `json:"n"`
		Lab struct {
			RTT int64 `json:"rtt_ns"`
		}
		Modes []struct {
			Mode      string         `json:"mode"`
			Successes int            `json:"successes"`
			Outcomes  map[string]int `json:"outcomes"`
		} `json:"modes"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("not JSON (%v): %s", err, stdout)
	}
	if rep.N != 3 || rep.Lab.RTT != 20e6 || len(rep.Modes) != 2 || rep.Modes[0].Successes != 3 || rep.Modes[0].Outcomes["accepted"] != 3 {
		t.Errorf("report %+v", rep)
	}
	if !strings.Contains(stderr, "bench: 6/6 connections (100%)") {
		t.Errorf("no progress lines on stderr: %q", stderr)
	}
	if b, err := os.ReadFile(plot); err != nil || !bytes.Contains(b, []byte("<svg")) {
		t.Errorf("plot: %v", err)
	}
}

// bench --lab gives the lab's server the queue a config asks for (here exactly 20, from a server
// config given with -c), measures TFO only with --mode tfo, and reports the kernels' counts.
func TestBenchCommandLabQueue(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("bench --lab needs root (network namespaces); run the tests as root")
	}
	cfg := filepath.Join(t.TempDir(), "server.json")
	if err := os.WriteFile(cfg, []byte(`{"run_type": "server", "password": ["x"], "tcp": {"fast_open": true, "fast_open_qlen": 20},
		"fastrojan": {"tfo": {"exact_qlen": true}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "bench", "--lab", "20ms", "-c", cfg, "--mode", "tfo", "-n", "4", "--lab-loss", "0%", "--lab-seed", "1")
	if code != exitOK {
		t.Fatalf("exit %d\nstderr: %s", code, stderr)
	}
	for _, want := range []string{
		"server fast_open_qlen 20 (exact): TFO queue in force 20, accept backlog",
		"4 connections per mode (tfo, interleaved)",
		"client TCPFastOpenActive +4",
		"server TCPFastOpenPassive +4",
		"TCPFastOpenListenOverflow +0",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "plain ") {
		t.Errorf("--mode tfo measured plain connections too:\n%s", stdout)
	}
	if code, _, stderr := runCLI(t, "bench", "-c", cfg, "--url", "http://192.0.2.1/", "--lab-qlen", "5"); code != exitUsage || !strings.Contains(stderr, "need --lab") {
		t.Errorf("--lab-qlen without --lab: exit %d, %s", code, stderr)
	}
}
