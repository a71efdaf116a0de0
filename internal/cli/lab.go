package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/fastrojan/fastrojan/internal/netlab"
)

// labCommand is `fastrojan lab up|down`: an emulated WAN between two network namespaces
// (client and server) for people to try things in, and the sweeper for labs left behind.
func labCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const usage = "usage: fastrojan lab up [--rtt 50ms] [--loss 1%] [--drop-syn-data] [--strip-tfo]\n" +
		"       fastrojan lab down"
	if len(args) == 0 || (args[0] != "up" && args[0] != "down") {
		fmt.Fprintln(stderr, usage)
		return exitUsage
	}
	fs := flag.NewFlagSet("lab "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, usage)
		fs.PrintDefaults()
	}
	rtt := fs.Duration("rtt", 50*time.Millisecond, "round-trip time between client and server (each direction delays half)")
	lossFlag := fs.String("loss", "0%", "random packet loss in each direction, as 1% or 0.01")
	dropSYNData := fs.Bool("drop-syn-data", false, "drop TCP SYNs that carry data (a firewall that blackholes TFO)")
	stripTFO := fs.Bool("strip-tfo", false, "remove the TFO option from SYN and SYN-ACK (a middlebox that strips TFO)")
	if err := fs.Parse(args[1:]); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fastrojan lab %s: unexpected argument %q\n%s\n", args[0], fs.Arg(0), usage)
		return exitUsage
	}
	fail := func(err error) int {
		if errors.Is(err, errors.ErrUnsupported) {
			fmt.Fprintf(stderr, "fastrojan lab: %v\n", err)
		} else {
			fmt.Fprintf(stderr, "fastrojan lab %s: %v (the lab needs root)\n", args[0], err)
		}
		return exitFail
	}

	if args[0] == "down" {
		return labDown(stdout, fail)
	}

	s, percent := strings.CutSuffix(strings.TrimSpace(*lossFlag), "%")
	loss, err := strconv.ParseFloat(s, 64)
	if percent {
		loss /= 100
	}
	if err != nil || loss < 0 || loss > 1 || *rtt < 0 {
		fmt.Fprintf(stderr, "fastrojan lab up: want --rtt ≥ 0 and --loss between 0%% and 100%%, got %v and %q\n", *rtt, *lossFlag)
		return exitUsage
	}
	lab, err := netlab.Open()
	if err != nil {
		return fail(err)
	}
	defer lab.Close()
	client, err := lab.AddHost("client", netlab.HostOptions{})
	if err != nil {
		return fail(err)
	}
	server, err := lab.AddHost("server", netlab.HostOptions{})
	if err != nil {
		return fail(err)
	}
	link, err := lab.Connect(client, server, netlab.LinkOptions{
		Delay:  *rtt / 2,
		Loss:   loss,
		Faults: netlab.Faults{DropSYNData: *dropSYNData, StripTFO: *stripTFO},
	})
	if err != nil {
		return fail(err)
	}

	fmt.Fprintf(stdout, "lab %s is up: RTT %v, loss %g%% per direction, drop-syn-data %v, strip-tfo %v\n\n",
		lab.Name(), *rtt, loss*100, *dropSYNData, *stripTFO)
	for _, h := range []struct {
		host  *netlab.Host
		addrs netlab.Addrs
	}{{client, link.AddrA()}, {server, link.AddrB()}} {
		fmt.Fprintf(stdout, "  %-7s netns %-28s %-12s %s  (net.ipv4.tcp_fastopen=%d)\n",
			h.host.Name(), h.host.Namespace(), h.addrs.V4, h.addrs.V6, netlab.DefaultTCPFastOpen)
	}
	sv, cl := server.Namespace(), client.Namespace()
	fmt.Fprintf(stdout, "\nRun commands inside a host with ip netns exec, for example:\n")
	fmt.Fprintf(stdout, "  ip netns exec %s nc -l 8080\n", sv)
	fmt.Fprintf(stdout, "  ip netns exec %s nc %s 8080\n", cl, link.AddrB().V4)
	fmt.Fprintf(stdout, "  ip netns exec %s ss -tin                  # TCP_INFO, fastopen state\n", cl)
	fmt.Fprintf(stdout, "  ip netns exec %s nstat -az 'TcpExtTCPFastOpen*'\n", sv)
	fmt.Fprintf(stdout, "\nThe forwarder runs until Ctrl-C. If this process is killed, 'fastrojan lab down' cleans up.\n")

	<-ctx.Done()
	ab, ba := link.AtoB().Stats(), link.BtoA().Stats()
	fmt.Fprintf(stdout, "\ntearing down; client→server %+v, server→client %+v\n", ab, ba)
	if err := lab.Close(); err != nil {
		return fail(err)
	}
	return exitOK
}

// labDown removes every lab namespace (`fastrojan lab down`).
func labDown(stdout io.Writer, fail func(error) int) int {
	removed, err := netlab.SweepAll()
	for _, name := range removed {
		fmt.Fprintf(stdout, "removed namespace %s\n", name)
	}
	if err != nil {
		return fail(err)
	}
	if len(removed) == 0 {
		fmt.Fprintln(stdout, "no lab namespaces")
	}
	return exitOK
}
