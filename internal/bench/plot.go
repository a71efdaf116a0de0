package bench

import (
	"fmt"
	"image/color"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Plot writes the TTFB distribution (CDF) of both modes to file, PNG or SVG by its extension,
// with dashed lines at whole multiples of the RTT.
func (r *Report) Plot(file string) error {
	ext := strings.ToLower(filepath.Ext(file))
	if ext != ".png" && ext != ".svg" {
		return fmt.Errorf("plot %s: want a .png or .svg file", file)
	}
	p := plot.New()
	title := "Time to first byte through fastrojan"
	if r.Lab != nil {
		title += fmt.Sprintf(" (lab, RTT %v", r.Lab.RTT)
		if r.Lab.Fault != "" {
			title += ", " + r.Lab.Fault
		}
		title += ")"
	}
	p.Title.Text = title
	p.X.Label.Text = "TTFB (ms)"
	p.Y.Label.Text = "fraction of connections"
	p.Y.Min, p.Y.Max = 0, 1
	p.Add(plotter.NewGrid())
	styles := map[string]color.Color{ModeTFO: color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, ModePlain: color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
		ModeWarm: color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}}
	var xmax float64
	for _, m := range []string{ModeTFO, ModePlain, ModeWarm} {
		var ds []time.Duration
		for _, s := range r.Samples {
			if s.Mode == m && s.OK {
				ds = append(ds, s.TTFB)
			}
		}
		if len(ds) == 0 {
			continue
		}
		slices.Sort(ds)
		pts := make(plotter.XYs, 0, 2*len(ds))
		for i, d := range ds {
			x := float64(d) / float64(time.Millisecond)
			pts = append(pts, plotter.XY{X: x, Y: float64(i) / float64(len(ds))}, plotter.XY{X: x, Y: float64(i+1) / float64(len(ds))})
			xmax = max(xmax, x)
		}
		line, err := plotter.NewLine(pts)
		if err != nil {
			return fmt.Errorf("plot %s: %w", m, err)
		}
		line.Color = styles[m]
		line.Width = vg.Points(2)
		st := r.Mode(m)
		label := fmt.Sprintf("%s: median %s ms", m, ms(st.TTFB.Median))
		if r.RTT > 0 {
			label += fmt.Sprintf(" = %.2f RTT", st.TTFBRTTs)
		}
		p.Add(line)
		p.Legend.Add(label, line)
	}
	// Lines at whole RTTs, where they can be told apart.
	if rtt := float64(r.RTT) / float64(time.Millisecond); rtt > 0 && xmax > 0 && xmax <= 10*rtt {
		for k := 1; float64(k)*rtt <= xmax*1.1; k++ {
			x := float64(k) * rtt
			l, err := plotter.NewLine(plotter.XYs{{X: x, Y: 0}, {X: x, Y: 1}})
			if err != nil {
				return err
			}
			l.Color = color.Gray{Y: 0x90}
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			p.Add(l)
			{
				lbl, err := plotter.NewLabels(plotter.XYLabels{XYs: plotter.XYs{{X: x, Y: 0.02}}, Labels: []string{fmt.Sprintf("%d RTT", k)}})
				if err == nil {
					lbl.TextStyle[0].Color = color.Gray{Y: 0x60}
					lbl.TextStyle[0].XAlign = draw.XRight
					p.Add(lbl)
				}
			}
		}
	}
	p.X.Min, p.X.Max = 0, xmax*1.1
	// The left of a TTFB CDF is empty: nothing arrives before the first round trips.
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.XOffs, p.Legend.YOffs = vg.Points(12), -vg.Points(12)
	p.Legend.Padding = vg.Points(4)
	if err := p.Save(8*vg.Inch, 4.5*vg.Inch, file); err != nil {
		return fmt.Errorf("plot %s: %w", file, err)
	}
	return nil
}
