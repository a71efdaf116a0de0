package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fastrojan/fastrojan/internal/tfo"
)

// Dist summarises durations.
type Dist struct {
	Min    time.Duration `json:"min_ns"`
	Median time.Duration `json:"median_ns"`
	P90    time.Duration `json:"p90_ns"`
	P99    time.Duration `json:"p99_ns"`
	Max    time.Duration `json:"max_ns"`
}

// distOf summarises ds (nearest-rank percentiles); the zero Dist for none.
func distOf(ds []time.Duration) Dist {
	if len(ds) == 0 {
		return Dist{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return Dist{Min: s[0], Median: percentile(s, 50), P90: percentile(s, 90), P99: percentile(s, 99), Max: s[len(s)-1]}
}

// percentile of sorted s by nearest rank.
func percentile(s []time.Duration, p float64) time.Duration {
	k := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[min(max(k, 0), len(s)-1)]
}

// ModeStats are the results of one mode.
type ModeStats struct {
	Mode        string         `json:"mode"`
	Attempts    int            `json:"attempts"`
	Successes   int            `json:"successes"`
	SuccessRate float64        `json:"success_rate"`
	Outcomes    map[string]int `json:"outcomes"` // TFO outcome of the connection to the server
	TTFB        Dist           `json:"ttfb"`
	// TTFBRTTs is the median TTFB divided by the RTT.
	TTFBRTTs float64 `json:"ttfb_median_rtts"`
	// Total is the time from dial start to the last byte of the last response of a connection
	// (the same as TTFB plus the body with one request per connection).
	Total  Dist     `json:"total"`
	Errors []string `json:"errors,omitempty"` // the first few distinct errors
}

// Report is the outcome of a run.
type Report struct {
	Server          string        `json:"server"`
	URL             string        `json:"url"`
	N               int           `json:"n"` // measured connections per mode
	Warmup          int           `json:"warmup"`
	Concurrency     int           `json:"concurrency"`
	RequestsPerConn int           `json:"requests_per_conn"`
	Duration        time.Duration `json:"duration_ns"`
	// RTT is the median of the kernel's tcpi_rtt over all successful connections.
	RTT time.Duration `json:"rtt_ns"`
	// RequestsPerSecond is HTTP responses received per second of the whole run, both modes.
	RequestsPerSecond float64     `json:"requests_per_second"`
	Lab               *LabInfo    `json:"lab,omitempty"`
	Modes             []ModeStats `json:"modes"` // tfo, then plain, then warm with Options.Warm
	// Pool counts how warm-mode streams got their connection (nil without Options.Warm).
	Pool *PoolStats `json:"pool,omitempty"`
	// Saving is plain's median TTFB minus TFO's; SavingRTTs is that in RTTs; SavingP90 compares p90s.
	// Kernel is the growth of the kernel's counters over the measured run (warm-up excluded),
	// when Options.Counters reads them.
	Kernel     *KernelCounts `json:"kernel,omitempty"`
	Saving     time.Duration `json:"saving_median_ns"`
	SavingRTTs float64       `json:"saving_median_rtts"`
	SavingP90  time.Duration `json:"saving_p90_ns"`
	Samples    []Sample      `json:"samples"`
}

// LabInfo describes the emulated network of a --lab run.
type LabInfo struct {
	RTT   time.Duration `json:"rtt_ns"`
	Fault string        `json:"fault,omitempty"`
	Loss  float64       `json:"loss,omitempty"` // each direction
	// The server's fast_open_qlen and exact_qlen, and the TFO queue and accept backlog the kernel
	// put in force on its listener.
	QLen         int  `json:"fast_open_qlen"`
	ExactQLen    bool `json:"exact_qlen"`
	QueueInForce int  `json:"tfo_queue"`
	Backlog      int  `json:"backlog"`
}

// KernelCounts are TcpExt counter increments over a run, client's and server's namespace.
type KernelCounts struct {
	Client map[string]uint64 `json:"client"`
	Server map[string]uint64 `json:"server,omitempty"`
}

// Counters a report shows, per side.
var (
	clientCounters = []string{"TCPFastOpenActive", "TCPFastOpenActiveFail"}
	serverCounters = []string{"TCPFastOpenPassive", "TCPFastOpenPassiveFail", "TCPFastOpenListenOverflow",
		"TCPFastOpenCookieReqd", "ListenOverflows", "ListenDrops", "SyncookiesSent"}
)

type counterSnap struct {
	client, server map[string]uint64
	err            error
}

func kernelDelta(before, after counterSnap) *KernelCounts {
	d := func(names []string, b, a map[string]uint64) map[string]uint64 {
		if a == nil {
			return nil
		}
		out := map[string]uint64{}
		for _, n := range names {
			if a[n] >= b[n] {
				out[n] = a[n] - b[n]
			}
		}
		return out
	}
	return &KernelCounts{Client: d(clientCounters, before.client, after.client), Server: d(serverCounters, before.server, after.server)}
}

// Mode returns the stats of mode, or nil.
func (r *Report) Mode(mode string) *ModeStats {
	for i := range r.Modes {
		if r.Modes[i].Mode == mode {
			return &r.Modes[i]
		}
	}
	return nil
}

const maxErrors = 5

func newReport(o Options, samples []Sample, d time.Duration) *Report {
	r := &Report{Server: o.Server, URL: o.URL, N: o.N, Warmup: o.Warmup, Concurrency: o.Concurrency,
		RequestsPerConn: o.RequestsPerConn, Duration: d, Samples: samples}
	slices.SortFunc(r.Samples, func(a, b Sample) int { return a.Seq - b.Seq })
	var rtts []time.Duration
	for _, s := range samples {
		if s.OK && s.RTT > 0 {
			rtts = append(rtts, s.RTT)
		}
	}
	r.RTT = distOf(rtts).Median
	modes := o.Modes
	if len(modes) == 0 {
		modes = []string{ModeTFO, ModePlain}
	}
	for _, m := range modes {
		ms := ModeStats{Mode: m, Outcomes: map[string]int{}}
		var ttfb, total []time.Duration
		for _, s := range samples {
			if s.Mode != m {
				continue
			}
			ms.Attempts++
			if s.Outcome != "" {
				ms.Outcomes[s.Outcome]++
			}
			if !s.OK {
				if len(ms.Errors) < maxErrors && !slices.Contains(ms.Errors, s.Err) {
					ms.Errors = append(ms.Errors, s.Err)
				}
				continue
			}
			ms.Successes++
			ttfb = append(ttfb, s.TTFB)
			total = append(total, s.Total)
		}
		if ms.Attempts > 0 {
			ms.SuccessRate = float64(ms.Successes) / float64(ms.Attempts)
		}
		ms.TTFB, ms.Total = distOf(ttfb), distOf(total)
		if r.RTT > 0 {
			ms.TTFBRTTs = float64(ms.TTFB.Median) / float64(r.RTT)
		}
		if d > 0 {
			r.RequestsPerSecond += float64(ms.Successes*o.RequestsPerConn) / d.Seconds()
		}
		r.Modes = append(r.Modes, ms)
	}
	t, p := r.Mode(ModeTFO), r.Mode(ModePlain)
	if t != nil && p != nil && t.Successes > 0 && p.Successes > 0 {
		r.Saving = p.TTFB.Median - t.TTFB.Median
		r.SavingP90 = p.TTFB.P90 - t.TTFB.P90
		if r.RTT > 0 {
			r.SavingRTTs = float64(r.Saving) / float64(r.RTT)
		}
	}
	return r
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

// WriteText prints the report as a table.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "fastrojan bench: %s via %s\n", r.URL, r.Server)
	if r.Lab != nil {
		fmt.Fprintf(&b, "lab: emulated RTT %v", r.Lab.RTT)
		if r.Lab.Fault != "" {
			fmt.Fprintf(&b, ", fault %s", r.Lab.Fault)
		}
		if r.Lab.Loss > 0 {
			fmt.Fprintf(&b, ", loss %.3g%% each way", 100*r.Lab.Loss)
		}
		qlen := "a floor"
		if r.Lab.ExactQLen {
			qlen = "exact"
		}
		fmt.Fprintf(&b, "; server fast_open_qlen %d (%s): TFO queue in force %d, accept backlog %d", r.Lab.QLen, qlen, r.Lab.QueueInForce, r.Lab.Backlog)
		b.WriteString("\n")
	}
	var modes []string
	for _, m := range r.Modes {
		modes = append(modes, m.Mode)
	}
	fmt.Fprintf(&b, "%d connections per mode (%s, interleaved) after %d warm-up each; concurrency %d; %d request(s) per connection; %s\n",
		r.N, strings.Join(modes, "/"), r.Warmup, r.Concurrency, r.RequestsPerConn, r.Duration.Round(time.Millisecond))
	fmt.Fprintf(&b, "RTT (kernel tcpi_rtt, median): %s ms; %.1f requests/s over the run\n\n", ms(r.RTT), r.RequestsPerSecond)
	if r.Pool != nil {
		b.WriteString("time to first byte, new stream each time (tfo, plain: a new connection; warm: a spare from the pool):\n")
	} else {
		b.WriteString("time to first byte, new connection each time:\n")
	}
	keepAlive := r.RequestsPerConn > 1
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "mode\tok\tmin ms\tmedian ms\tp90 ms\tp99 ms\tmax ms\tmedian RTTs\t"
	if keepAlive {
		head += fmt.Sprintf("all %d done, median ms\t", r.RequestsPerConn)
	}
	fmt.Fprintln(tw, head)
	for _, m := range r.Modes {
		fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%s\t%s\t%s\t%s\t%.2f\t", m.Mode, m.Successes, m.Attempts,
			ms(m.TTFB.Min), ms(m.TTFB.Median), ms(m.TTFB.P90), ms(m.TTFB.P99), ms(m.TTFB.Max), m.TTFBRTTs)
		if keepAlive {
			fmt.Fprintf(tw, "%s\t", ms(m.Total.Median))
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	b.WriteString("\nTFO outcomes (connection to the server):\n")
	for _, m := range r.Modes {
		if m.Mode == ModeWarm {
			continue
		}
		fmt.Fprintf(&b, "  %-5s %s\n", m.Mode, outcomeSummary(m.Outcomes))
	}
	if k := r.Kernel; k != nil {
		b.WriteString("\nkernel counters during the run (TcpExt growth):\n")
		fmt.Fprintf(&b, "  client %s\n", counterLine(clientCounters, k.Client))
		if k.Server != nil {
			fmt.Fprintf(&b, "  server %s\n", counterLine(serverCounters, k.Server))
		}
		if t := r.Mode(ModeTFO); t != nil && t.Attempts > 0 {
			acc := t.Outcomes[tfo.Accepted.String()]
			fmt.Fprintf(&b, "  TFO connections kept with their SYN data accepted: %d of %d = %.1f%% (the kernels count every SYN with data, second attempts after a lost SYN included)\n",
				acc, t.Attempts, 100*float64(acc)/float64(t.Attempts))
		}
	}
	if w := r.Mode(ModeWarm); w != nil && r.Pool != nil {
		fmt.Fprintf(&b, "\nwarm streams: %d rode a spare, %d opened their own connection (pool, warm-up included: %d hits, %d joined an opening spare, %d misses; %d spares opened, %d retired unused)\n",
			w.Outcomes[OutcomeSpare], w.Outcomes[OutcomeOwn], r.Pool.Hits, r.Pool.Joined, r.Pool.Misses, r.Pool.Opened, r.Pool.Retired)
		if t := r.Mode(ModeTFO); t != nil && t.Successes > 0 && w.Successes > 0 {
			d := t.TTFB.Median - w.TTFB.Median
			fmt.Fprintf(&b, "saving of the warm path over cold TFO: median %s ms", ms(d))
			if r.RTT > 0 {
				fmt.Fprintf(&b, " = %.2f RTT", float64(d)/float64(r.RTT))
			}
			b.WriteString("\n")
		}
	}
	switch {
	case r.Mode(ModeTFO) == nil || r.Mode(ModePlain) == nil:
	case r.Saving >= 0:
		fmt.Fprintf(&b, "\nsaving with TFO: median %s ms = %.2f RTT, p90 %s ms\n", ms(r.Saving), r.SavingRTTs, ms(r.SavingP90))
	default:
		fmt.Fprintf(&b, "\nTFO is SLOWER here: median +%s ms = %.2f RTT, p90 +%s ms (see the outcomes above)\n", ms(-r.Saving), -r.SavingRTTs, ms(-r.SavingP90))
	}
	for _, m := range r.Modes {
		for _, e := range m.Errors {
			fmt.Fprintf(&b, "%s error: %s\n", m.Mode, e)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func counterLine(names []string, m map[string]uint64) string {
	parts := make([]string, 0, len(names))
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s +%d", n, m[n]))
	}
	return strings.Join(parts, ", ")
}

func outcomeSummary(m map[string]int) string {
	var parts []string
	for _, o := range tfo.Outcomes() {
		if n := m[o.String()]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", o, n))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// WriteJSON prints the report, samples included, as JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
