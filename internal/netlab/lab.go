package netlab

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"time"
)

// Lab owns a set of hosts and links. Create one with Open (or New in a
// test), add hosts and links, and Close it: Close tears everything down and
// is safe to call more than once.
type Lab struct {
	name string // NamePrefix + "<pid>-<n>"

	ctx    context.Context // cancelled by Close; kills commands started from Host.Command
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	hosts  []*Host
	links  []*Link
	cmds   []*exec.Cmd

	closeOnce sync.Once
	closeErr  error
}

// Name returns the lab's name, the prefix of all its namespaces.
func (l *Lab) Name() string { return l.name }

// Hosts returns the hosts added so far, in order.
func (l *Lab) Hosts() []*Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Host(nil), l.hosts...)
}

// Links returns the links added so far, in order.
func (l *Lab) Links() []*Link {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Link(nil), l.links...)
}

// Host is a network namespace of the lab with its own loopback, sysctls,
// TCP stack, cookie cache and counters.
type Host struct {
	lab  *Lab
	name string // short name given to AddHost
	ns   string // namespace name: <lab name>-<short name>
	sys  hostSys

	mu    sync.Mutex
	addrs []Addrs // one per link end, in link order
}

// Name returns the host's short name ("client", "server", ...).
func (h *Host) Name() string { return h.name }

// Namespace returns the name of the host's network namespace, as
// `ip netns exec NAME ...` wants it.
func (h *Host) Namespace() string { return h.ns }

// Lab returns the lab the host belongs to.
func (h *Host) Lab() *Lab { return h.lab }

// Addrs returns the host's addresses, one pair per link end, in the order
// the links were made.
func (h *Host) Addrs() []Addrs {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Addrs(nil), h.addrs...)
}

// Link joins side A (one host) to side B (one host, or several that share
// the same addresses: ECMP) through TUN devices and a userspace forwarder.
// A→B traffic from A goes to the B host chosen by the switch; traffic from
// any B host goes to A.
type Link struct {
	lab    *Lab
	index  int
	ifname string
	a      *Host
	bs     []*Host
	addrA  Addrs
	addrB  Addrs
	mtu    int

	faults faultSet
	atob   Direction
	btoa   Direction
	steer  steering

	fw *forwarder
}

// A returns side A's host.
func (k *Link) A() *Host { return k.a }

// B returns side B's hosts (more than one for an ECMP link).
func (k *Link) B() []*Host { return append([]*Host(nil), k.bs...) }

// AddrA returns side A's addresses on this link.
func (k *Link) AddrA() Addrs { return k.addrA }

// AddrB returns side B's addresses on this link (shared by all B hosts).
func (k *Link) AddrB() Addrs { return k.addrB }

// Interface returns the name of the link's TUN device in each of its hosts.
func (k *Link) Interface() string { return k.ifname }

// MTU returns the MTU of the link's TUN devices.
func (k *Link) MTU() int { return k.mtu }

// AtoB returns the A→B direction, to change its shaping or read its counters.
func (k *Link) AtoB() *Direction { return &k.atob }

// BtoA returns the B→A direction.
func (k *Link) BtoA() *Direction { return &k.btoa }

// SetDelay sets the one-way delay of both directions (RTT = 2 × d).
func (k *Link) SetDelay(d time.Duration) {
	k.atob.SetDelay(d)
	k.btoa.SetDelay(d)
}

// SetLoss sets the loss probability of both directions.
func (k *Link) SetLoss(p float64) {
	k.atob.SetLoss(p)
	k.btoa.SetLoss(p)
}

// SetFaults replaces all faults at once; it takes effect for the next packet.
func (k *Link) SetFaults(f Faults) { k.faults.set(f) }

// Faults returns the active faults.
func (k *Link) Faults() Faults { return k.faults.get() }

// SetDropSYNData switches the "drop SYNs carrying data" fault.
func (k *Link) SetDropSYNData(on bool) { k.faults.dropSYNData.Store(on) }

// SetStripTFO switches the "strip the TFO option" fault.
func (k *Link) SetStripTFO(on bool) { k.faults.stripTFO.Store(on) }

// SetDropNonSYN switches Faults.DropNonSYN.
func (k *Link) SetDropNonSYN(on bool) { k.faults.dropNonSYN.Store(on) }

// SetBlackhole switches the "drop everything" fault.
func (k *Link) SetBlackhole(on bool) { k.faults.blackhole.Store(on) }

// SteerNewFlows makes B host i (index into B()) receive flows that start
// from now on; established flows stay where they are, as an ECMP next hop
// added with resilient hashing does.
func (k *Link) SteerNewFlows(i int) error {
	if i < 0 || i >= len(k.bs) {
		return fmt.Errorf("netlab: link %s has %d B hosts, no index %d", k.ifname, len(k.bs), i)
	}
	k.steer.target.Store(int32(i))
	return nil
}

// MoveAllFlows sends every flow, established ones included, to B host i,
// as a load balancer rehash does. The new host answers packets of flows it
// does not know with a reset.
func (k *Link) MoveAllFlows(i int) error {
	if err := k.SteerNewFlows(i); err != nil {
		return err
	}
	k.steer.epoch.Add(1)
	return nil
}

// Path is the usual lab for one proxied connection: client ↔ server ↔
// origin, each a Host. The client reaches the server over Link; the server
// reaches the origin over OriginLink. The origin is a third host behind the
// server; the client has no route to it, so client traffic can only get
// there through a proxy on the server.
type Path struct {
	Lab                    *Lab
	Client, Server, Origin *Host
	Link                   *Link // A = Client, B = Server
	OriginLink             *Link // A = Server, B = Origin

	ClientAddr Addrs // the client's addresses, facing the server
	ServerAddr Addrs // the server's addresses, facing the client (dial these from the client)
	OriginAddr Addrs // the origin's addresses, facing the server (dial these from the server)
}

// OpenPath builds a Path in a new lab. Close the lab (p.Lab.Close) when done.
func OpenPath(opts PathOptions) (*Path, error) {
	lab, err := Open()
	if err != nil {
		return nil, err
	}
	p, err := buildPath(lab, opts)
	if err != nil {
		return nil, errors.Join(err, lab.Close())
	}
	return p, nil
}

// NewPath is OpenPath for tests: it skips the test when the lab cannot run
// here (see New), fails it on other errors, and closes the lab in t.Cleanup.
func NewPath(tb TB, opts PathOptions) *Path {
	tb.Helper()
	lab := New(tb)
	p, err := buildPath(lab, opts)
	if err != nil {
		tb.Fatalf("netlab: %v", err)
	}
	return p
}

func buildPath(lab *Lab, opts PathOptions) (*Path, error) {
	client, err := lab.AddHost("client", HostOptions{TCPFastOpen: opts.ClientTFO})
	if err != nil {
		return nil, err
	}
	server, err := lab.AddHost("server", HostOptions{TCPFastOpen: opts.ServerTFO})
	if err != nil {
		return nil, err
	}
	origin, err := lab.AddHost("origin", HostOptions{TCPFastOpen: opts.OriginTFO})
	if err != nil {
		return nil, err
	}
	link, err := lab.Connect(client, server, LinkOptions{Delay: opts.RTT / 2, Loss: opts.Loss, Rate: opts.Rate, Faults: opts.Faults, Seed: opts.Seed})
	if err != nil {
		return nil, err
	}
	olink, err := lab.Connect(server, origin, LinkOptions{Delay: opts.OriginRTT / 2, Veth: opts.OriginVeth})
	if err != nil {
		return nil, err
	}
	return &Path{
		Lab: lab, Client: client, Server: server, Origin: origin,
		Link: link, OriginLink: olink,
		ClientAddr: link.AddrA(), ServerAddr: link.AddrB(), OriginAddr: olink.AddrB(),
	}, nil
}

// New opens a lab for a test and closes it in tb.Cleanup. It skips the
// test, saying what is missing, unless it runs as root on Linux with
// /dev/net/tun and the ip command (for Host.Command); it fails the test on
// any other error.
func New(tb TB) *Lab {
	tb.Helper()
	if reason := unavailable(); reason != "" {
		tb.Skipf("netlab: %s", reason)
	}
	lab, err := Open()
	if err != nil {
		tb.Fatalf("netlab: %v", err)
	}
	tb.Cleanup(func() {
		if err := lab.Close(); err != nil {
			tb.Errorf("netlab: close %s: %v", lab.Name(), err)
		}
	})
	return lab
}
