// Package doctor answers "will TCP Fast Open work here, and if not, what do I type to fix it?".
//
// A Check looks at one thing (the kernel, the tcp_fastopen sysctl, the TcpExt counters, the
// kernel's cookie cache, a loopback self-test, a remote server, a config file) and reports lines
// and Findings. Every Finding that is a problem carries the exact command or config line that
// fixes it. Checks are independent: Run starts them all at once, each with its own timeout, and
// collects what each said under its own name, as tailscale's doctor does. A check that cannot run
// on this OS returns an error wrapping errors.ErrUnsupported and is shown as "not available on this
// OS".
package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"
)

// Check is one independent diagnosis.
type Check interface {
	// Name is the short prefix of the check's output ("sysctl", "probe").
	Name() string
	// Run examines and reports through out. An error means the check could not do its job; an
	// error wrapping errors.ErrUnsupported means it does not apply to this OS.
	Run(ctx context.Context, out *Out) error
}

// Severity ranks a finding.
type Severity int

// Severities, from harmless to fatal. Fail means TFO cannot work as configured (exit status 1).
const (
	OK   Severity = iota // works as it should
	Note                 // worth knowing, nothing to change now
	Warn                 // TFO works but loses some of its benefit
	Fail                 // TFO cannot work as configured
)

var severityNames = [...]string{OK: "ok", Note: "note", Warn: "warn", Fail: "fail"}

func (s Severity) String() string {
	if s >= 0 && int(s) < len(severityNames) {
		return severityNames[s]
	}
	return fmt.Sprintf("severity(%d)", int(s))
}

// MarshalText writes the severity's name.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Finding is one conclusion of a check. Fix is the exact command or config line that resolves it
// (several lines joined by "\n"), empty when there is nothing to do.
type Finding struct {
	Severity Severity `json:"severity"`
	Message  string   `json:"message"`
	Fix      string   `json:"fix,omitempty"`
}

// Out collects what one check reports. It is safe for concurrent use.
type Out struct {
	mu       sync.Mutex
	lines    []string
	findings []Finding
}

// Logf records a line of information.
func (o *Out) Logf(format string, args ...any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.lines = append(o.lines, fmt.Sprintf(format, args...))
}

// Report records a finding.
func (o *Out) Report(sev Severity, msg, fix string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.findings = append(o.findings, Finding{Severity: sev, Message: msg, Fix: fix})
}

// Problem is Report for a problem and its fix.
func (o *Out) Problem(sev Severity, fix, format string, args ...any) {
	o.Report(sev, fmt.Sprintf(format, args...), fix)
}

// Status is the state a check ended in.
type Status string

// Statuses of a Result.
const (
	StatusOK    Status = "ok"
	StatusNote  Status = "note"
	StatusWarn  Status = "warn"
	StatusFail  Status = "fail"
	StatusNA    Status = "n/a"   // not available on this OS
	StatusError Status = "error" // the check could not run
)

// Result is what one check produced.
type Result struct {
	Check    string        `json:"check"`
	Status   Status        `json:"status"`
	Lines    []string      `json:"lines"`
	Findings []Finding     `json:"findings"`
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"duration_ns"`
}

// Report is the outcome of Run: one Result per check, in the order given.
type Report struct {
	Results []Result `json:"results"`
}

// Exit codes of `fastrojan doctor`.
const (
	ExitOK   = 0 // TFO can work as configured
	ExitFail = 1 // TFO cannot work as configured
)

// Failed reports whether any check found that TFO cannot work as configured.
func (r *Report) Failed() bool {
	for _, res := range r.Results {
		if res.Status == StatusFail {
			return true
		}
	}
	return false
}

// ExitCode is ExitFail when a check failed, ExitOK otherwise.
func (r *Report) ExitCode() int {
	if r.Failed() {
		return ExitFail
	}
	return ExitOK
}

// Findings returns every finding of every check at or above sev, with the check's name.
func (r *Report) Findings(sev Severity) []NamedFinding {
	var out []NamedFinding
	for _, res := range r.Results {
		for _, f := range res.Findings {
			if f.Severity >= sev {
				out = append(out, NamedFinding{Check: res.Check, Finding: f})
			}
		}
	}
	return out
}

// NamedFinding is a Finding with the name of the check that made it.
type NamedFinding struct {
	Check string
	Finding
}

// DefaultTimeout bounds each check when Run is given none.
const DefaultTimeout = 15 * time.Second

// Run runs every check in parallel, each bounded by timeout, and returns their results in the
// order of checks. A check that overruns its timeout is reported as an error; Run does not wait for
// it beyond the timeout (its goroutine ends when its context's cancellation reaches it).
func Run(ctx context.Context, checks []Check, timeout time.Duration) *Report {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	rep := &Report{Results: make([]Result, len(checks))}
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep.Results[i] = runOne(ctx, c, timeout)
		}()
	}
	wg.Wait()
	return rep
}

// runOne runs one check with its own timeout and turns what it said into a Result.
func runOne(ctx context.Context, c Check, timeout time.Duration) Result {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := &Out{}
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("check panicked: %v", p)
			}
		}()
		done <- c.Run(ctx, out)
	}()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		err = fmt.Errorf("no answer within %v: %w", timeout, ctx.Err())
	}
	out.mu.Lock()
	res := Result{
		Check:    c.Name(),
		Lines:    append([]string{}, out.lines...),
		Findings: append([]Finding{}, out.findings...),
		Duration: time.Since(start),
	}
	out.mu.Unlock()
	worst := OK
	for _, f := range res.Findings {
		worst = max(worst, f.Severity)
	}
	res.Status = Status(worst.String())
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		res.Status = StatusNA
		res.Error = "not available on this OS"
	case err != nil:
		res.Error = err.Error()
		if worst < Fail {
			res.Status = StatusError
		}
	}
	return res
}

// WriteText prints the report for people: each check's lines and findings under its name, then a
// summary with every fix.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	for _, res := range r.Results {
		fmt.Fprintf(&b, "[%s] %s\n", res.Check, strings.ToUpper(string(res.Status)))
		for _, l := range res.Lines {
			fmt.Fprintf(&b, "  %s\n", l)
		}
		if res.Error != "" {
			fmt.Fprintf(&b, "  %s\n", res.Error)
		}
		for _, f := range res.Findings {
			fmt.Fprintf(&b, "  %s: %s\n", strings.ToUpper(f.Severity.String()), f.Message)
			for _, l := range splitFix(f.Fix) {
				fmt.Fprintf(&b, "    fix: %s\n", l)
			}
		}
		b.WriteByte('\n')
	}
	fails, warns := len(r.Findings(Fail)), len(r.Findings(Warn))-len(r.Findings(Fail))
	// The same cause often shows in several checks: list each fix once.
	var fixes []string
	for _, f := range r.Findings(Warn) {
		for _, l := range splitFix(f.Fix) {
			if !slices.Contains(fixes, l) {
				fixes = append(fixes, l)
			}
		}
	}
	if len(fixes) > 0 {
		b.WriteString("To fix (each once):\n")
		for _, l := range fixes {
			fmt.Fprintf(&b, "  %s\n", l)
		}
		b.WriteByte('\n')
	}
	switch {
	case fails > 0:
		fmt.Fprintf(&b, "TFO cannot work as configured: %d problem(s) to fix, %d warning(s).\n", fails, warns)
	case warns > 0:
		fmt.Fprintf(&b, "TFO can work, with %d warning(s).\n", warns)
	default:
		fmt.Fprintln(&b, "TFO can work as configured.")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func splitFix(fix string) []string {
	if fix == "" {
		return nil
	}
	return strings.Split(fix, "\n")
}

// jsonReport is the --json form: the results plus the verdict.
type jsonReport struct {
	Exit    int      `json:"exit"`
	Failed  bool     `json:"tfo_cannot_work"`
	Results []Result `json:"results"`
}

// WriteJSON prints the report for machines.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(jsonReport{Exit: r.ExitCode(), Failed: r.Failed(), Results: r.Results})
}
