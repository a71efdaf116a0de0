// Package netlab is an emulated WAN on one Linux machine, so that TFO claims
// are measured rather than assumed: on loopback a round trip takes 20 µs, and
// this kernel has no netem qdisc, so the WAN is emulated in userspace.
//
// A Lab owns hosts and links. A Host is a named network namespace
// ("frlab-<pid>-<n>-<host>", usable with `ip netns exec`) with loopback up
// and its own net.ipv4.tcp_fastopen, TCP stack, cookie cache and counters.
// A Link joins side A to side B through one TUN device in each host
// (IFF_TUN|IFF_NO_PI, MTU 1500) and a forwarder in this process that
// applies, per direction, a one-way delay (RTT = 2 × delay), optional jitter
// (order kept unless Reorder), random loss and a rate limit, plus faults
// that can be switched while traffic flows: drop SYNs carrying data, strip
// the TFO option, blackhole. An ECMP link leads from A to several B hosts
// that share one address; SteerNewFlows and MoveAllFlows flip the switch.
//
// # In a test
//
// A test gets a client host, a server host and an origin host with
//
//	p := netlab.NewPath(t, netlab.PathOptions{RTT: 50 * time.Millisecond})
//
// p.Client, p.Server and p.Origin are *Host. The origin is a third host
// behind the server (link p.OriginLink, delay from PathOptions.OriginRTT);
// the client has no route to it, so the client reaches it only through a
// proxy on the server. PathOptions.OriginVeth makes that link a veth pair
// (LinkOptions.Veth): no userspace hop, no shaping, no faults. Dial the server at p.ServerAddr.V4 or .V6 from the
// client, and the origin at p.OriginAddr.V4 or .V6 from the server. Switch
// faults on p.Link (p.Link.SetDropSYNData(true), SetStripTFO, SetBlackhole)
// and change shaping with p.Link.SetDelay or p.Link.AtoB().SetLoss.
//
// Code runs in a host in two ways. Host.Do runs a Go function on a locked
// OS thread inside the namespace; sockets created there stay in it:
//
//	var ln net.Listener
//	err := p.Server.Do(func() (err error) { ln, err = net.Listen("tcp", ":443"); return err })
//	var c net.Conn
//	err = p.Client.Do(func() (err error) {
//		c, err = net.Dial("tcp", netip.AddrPortFrom(p.ServerAddr.V4, 443).String())
//		return err
//	})
//
// Host.Command returns an *exec.Cmd that runs a program inside the
// namespace. Host.Sysctl, Host.ReadSysctl and Host.TcpExt (the TcpExt
// counters of /proc/net/netstat) read and write the host's own settings.
//
// NewPath and New skip the test, saying why, unless it runs as root on Linux
// with /dev/net/tun and the ip command; they close the lab in t.Cleanup,
// which runs even when the test panics. A test binary killed outright leaves
// namespaces behind: SweepStale removes those whose process is gone, so a
// package that uses the lab calls it from TestMain. `fastrojan lab down`
// calls SweepAll. For a custom topology use New (or Open), AddHost, Connect
// and ConnectECMP.
//
// # Addresses
//
// Only the benchmarking ranges are used: link i (in creation order within a
// lab) gives side A 198.18.i.1/24 and 2001:2:0:i::1/64 and side B .2 and ::2
// (links 256-511 use 198.19.x). Every lab is its own set of namespaces, so
// labs running in parallel do not collide.
//
// # Accuracy and cost
//
// Packets are released by a timerfd on the Go netpoller; the last 200 µs
// before a packet is due the releaser waits on the CPU (yielding to other
// goroutines), so release times do not carry timer wake-up latency. Measured
// on a 2-core VM: TCP connect time is within about 0.4 ms of the configured
// RTT (median), and a link without delay carries over 1 Gbit/s. The
// forwarder allocates nothing per packet once warm.
package netlab
