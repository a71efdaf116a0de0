package metrics

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fastrojan/fastrojan/internal/tfo"
)

// kernelTFO exports the TcpExt TCPFastOpen* counters of the process's network namespace
// (/proc/net/netstat), read at each scrape: the kernel's own account of TFO, independent of ours;
// next to them the listener counters that say whether accept queues overflow (ListenOverflows,
// ListenDrops, SyncookiesSent: a SYN answered with a SYN cookie gets no TFO).
type kernelTFO struct {
	desc *prometheus.Desc
	read func() (map[string]uint64, error)
}

// NewKernelTFOCollector returns the collector of the kernel's TFO counters:
// fastrojan_kernel_tcp_ext_total{counter="TCPFastOpenActive"} and the like. Where the counters cannot
// be read (not Linux) a scrape reports the error for this collector only.
func NewKernelTFOCollector() prometheus.Collector {
	return &kernelTFO{
		desc: prometheus.NewDesc("fastrojan_kernel_tcp_ext_total",
			"The kernel's TcpExt TCPFastOpen* counters of fastrojan's network namespace (/proc/net/netstat): "+
				"TCPFastOpenActive (SYN data acknowledged, client side), TCPFastOpenPassive (SYN data accepted, server side), "+
				"TCPFastOpenActiveFail, TCPFastOpenPassiveFail, TCPFastOpenCookieReqd, TCPFastOpenBlackhole, "+
				"TCPFastOpenListenOverflow (SYN data refused: TFO queue full), ...; and ListenOverflows, ListenDrops, SyncookiesSent "+
				"(accept queue overflows; SYNs answered with a SYN cookie get no TFO).",
			[]string{"counter"}, nil),
		read: tfo.ReadTcpExt,
	}
}

func (k *kernelTFO) Describe(ch chan<- *prometheus.Desc) { ch <- k.desc }

func (k *kernelTFO) Collect(ch chan<- prometheus.Metric) {
	m, err := k.read()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(k.desc, err)
		return
	}
	c := tfo.FastOpenCounters(m)
	for _, n := range tfo.ListenCounters() {
		if v, ok := m[n]; ok {
			c[n] = v
		}
	}
	names := make([]string, 0, len(c))
	for n := range c {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		ch <- prometheus.MustNewConstMetric(k.desc, prometheus.CounterValue, float64(c[n]), n)
	}
}
