package bench

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// Progress draws a bar on a terminal and prints a line every 10% otherwise, on stderr.
type Progress struct {
	w        io.Writer
	terminal bool
	mu       sync.Mutex
	start    time.Time
	lastPct  int
	drawn    bool
}

// NewProgress reports to w.
func NewProgress(w io.Writer) *Progress {
	p := &Progress{w: w, start: time.Now(), lastPct: -1}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.terminal = true
	}
	return p
}

// Update is Options.Progress.
func (p *Progress) Update(done, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pct := 100 * done / max(total, 1)
	if p.terminal {
		const width = 40
		fill := width * done / max(total, 1)
		fmt.Fprintf(p.w, "\r[%s%s] %d/%d connections %3d%% %s ", strings.Repeat("=", fill), strings.Repeat(" ", width-fill),
			done, total, pct, time.Since(p.start).Round(time.Second))
		p.drawn = true
		return
	}
	if pct/10 != p.lastPct/10 || done == total {
		if pct/10 != p.lastPct/10 {
			fmt.Fprintf(p.w, "bench: %d/%d connections (%d%%), %s\n", done, total, pct, time.Since(p.start).Round(time.Second))
		}
		p.lastPct = pct
	}
}

// Finish ends the bar's line.
func (p *Progress) Finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}
