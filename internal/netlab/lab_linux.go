package netlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where named network namespaces live (as for `ip netns`).
const netnsDir = "/run/netns"

// hostSys is the Linux state of a host.
type hostSys struct {
	nsFD int             // open handle on the namespace
	nl   *netlink.Handle // rtnetlink socket inside the namespace
}

var labCounter atomic.Uint64

// unavailable says why a lab cannot run here, or "" when it can.
func unavailable() string {
	if os.Geteuid() != 0 {
		return "needs root (network namespaces and TUN devices); run the tests as root"
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return fmt.Sprintf("needs /dev/net/tun: %v", err)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "needs the ip command (iproute2) for Host.Command"
	}
	return ""
}

// Open creates an empty lab. Its namespaces are named
// NamePrefix+"<pid>-<n>-<host>".
func Open() (*Lab, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("netlab: needs root")
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Lab{
		name:   fmt.Sprintf("%s%d-%d", NamePrefix, os.Getpid(), labCounter.Add(1)-1),
		ctx:    ctx,
		cancel: cancel,
	}, nil
}

var hostNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,19}$`)

// AddHost creates a host: a named network namespace with loopback up,
// net.ipv4.tcp_fastopen set as opts say, and IPv6 duplicate address
// detection off (so addresses work at once).
func (l *Lab) AddHost(name string, opts HostOptions) (*Host, error) {
	if !hostNameRE.MatchString(name) {
		return nil, fmt.Errorf("netlab: host name %q: want [a-z][a-z0-9-]{0,19}", name)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errors.New("netlab: lab is closed")
	}
	for _, h := range l.hosts {
		if h.name == name {
			return nil, fmt.Errorf("netlab: host %q exists", name)
		}
	}
	h := &Host{lab: l, name: name, ns: l.name + "-" + name, sys: hostSys{nsFD: -1}}
	fd, err := createNamedNS(h.ns)
	if err != nil {
		return nil, fmt.Errorf("netlab: create namespace %s: %w", h.ns, err)
	}
	h.sys.nsFD = fd
	l.hosts = append(l.hosts, h) // from here on Close removes it
	if h.sys.nl, err = netlink.NewHandleAt(netns.NsHandle(fd)); err != nil {
		return nil, fmt.Errorf("netlab: netlink in %s: %w", h.ns, err)
	}
	lo, err := h.sys.nl.LinkByName("lo")
	if err == nil {
		err = h.sys.nl.LinkSetUp(lo)
	}
	if err != nil {
		return nil, fmt.Errorf("netlab: loopback up in %s: %w", h.ns, err)
	}
	err = h.Do(func() error {
		for _, kv := range [][2]string{
			{"net.ipv4.tcp_fastopen", strconv.Itoa(opts.tfoValue())},
			{"net.ipv6.conf.all.accept_dad", "0"},
			{"net.ipv6.conf.default.accept_dad", "0"},
			{"net.ipv6.conf.default.router_solicitations", "0"},
		} {
			if err := writeSysctl(kv[0], kv[1]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("netlab: host %s: %w", h.ns, err)
	}
	return h, nil
}

// createNamedNS creates a network namespace bound at /run/netns/name and
// returns an open handle on it. The calling thread never leaves its own
// namespace: the work happens on a locked thread that returns to its
// namespace, or dies with it if it cannot.
func createNamedNS(name string) (int, error) {
	if err := ensureNetnsDir(); err != nil {
		return -1, err
	}
	type result struct {
		fd  int
		err error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			res <- result{-1, fmt.Errorf("current namespace: %w", err)}
			return
		}
		defer orig.Close()
		ns, err := netns.NewNamed(name)
		if rerr := netns.Set(orig); rerr != nil {
			// Stay locked: the thread exits with the goroutine.
			if err == nil {
				ns.Close()
				_ = removeNamedNS(name)
			}
			res <- result{-1, fmt.Errorf("return to original namespace: %w", rerr)}
			return
		}
		runtime.UnlockOSThread()
		if err != nil {
			_ = os.Remove(filepath.Join(netnsDir, name)) // NewNamed may leave the empty file
			res <- result{-1, err}
			return
		}
		res <- result{int(ns), nil}
	}()
	r := <-res
	return r.fd, r.err
}

// ensureNetnsDir makes /run/netns a shared mount point of its own, as iproute2's `ip netns add` does.
// Without it, a namespace bound here first and an `ip netns add` afterwards (which bind-mounts the
// directory over itself) leave our binding underneath the new mount: it can then be neither
// unmounted nor removed through the path.
func ensureNetnsDir() error {
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return fmt.Errorf("netlab: %w", err)
	}
	err := unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) { // not a mount point yet
		if err := unix.Mount(netnsDir, netnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("netlab: bind-mount %s: %w", netnsDir, err)
		}
		err = unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("netlab: make %s a shared mount: %w", netnsDir, err)
	}
	return nil
}

func removeNamedNS(name string) error {
	p := filepath.Join(netnsDir, name)
	err := unix.Unmount(p, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", p, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Connect joins a (side A) and b (side B) with a link. Side A gets
// 198.18.<i>.1/24 and 2001:2:0:<i>::1/64, side B .2 and ::2, where i is
// the link's index in the lab.
func (l *Lab) Connect(a, b *Host, opts LinkOptions) (*Link, error) {
	return l.ConnectECMP(a, []*Host{b}, opts)
}

// ConnectECMP joins a (side A) to every host in bs (side B). All B hosts
// get the same addresses; packets from A go to bs[0] until SteerNewFlows
// or MoveAllFlows says otherwise. Replies from any B host reach A.
func (l *Lab) ConnectECMP(a *Host, bs []*Host, opts LinkOptions) (*Link, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if len(bs) == 0 {
		return nil, errors.New("netlab: link needs at least one B host")
	}
	seen := map[*Host]bool{a: true}
	for _, h := range append([]*Host{a}, bs...) {
		if h == nil || h.lab != l {
			return nil, errors.New("netlab: link host is nil or from another lab")
		}
	}
	for _, b := range bs {
		if seen[b] {
			return nil, fmt.Errorf("netlab: host %s appears twice on one link", b.name)
		}
		seen[b] = true
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errors.New("netlab: lab is closed")
	}
	if len(l.links) >= maxLinks {
		return nil, fmt.Errorf("netlab: at most %d links per lab", maxLinks)
	}
	k := &Link{lab: l, index: len(l.links), a: a, bs: append([]*Host(nil), bs...), mtu: opts.MTU}
	k.ifname = fmt.Sprintf("frl%d", k.index)
	k.addrA, k.addrB = linkAddrs(k.index)
	k.faults.set(opts.Faults)
	k.atob.apply(opts)
	k.btoa.apply(opts)
	k.steer.n = len(bs)

	if opts.Veth {
		if len(bs) != 1 {
			return nil, errors.New("netlab: a veth link joins two hosts, not ECMP")
		}
		if err := a.addVeth(k.ifname, opts.MTU, k.addrA, bs[0], k.addrB); err != nil {
			return nil, err
		}
		l.links = append(l.links, k)
		a.addAddrs(k.addrA)
		bs[0].addAddrs(k.addrB)
		return k, nil
	}

	var files []*os.File
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	fa, err := a.openTUN(k.ifname, opts.MTU, k.addrA)
	if err != nil {
		return nil, err
	}
	files = append(files, fa)
	var fbs []*os.File
	for _, b := range bs {
		fb, err := b.openTUN(k.ifname, opts.MTU, k.addrB)
		if err != nil {
			closeAll()
			return nil, err
		}
		files = append(files, fb)
		fbs = append(fbs, fb)
	}
	k.fw, err = newForwarder(fa, fbs, opts.MTU, opts.QueueLen, opts.Seed, &k.faults, &k.steer, &k.atob, &k.btoa)
	if err != nil {
		closeAll()
		return nil, err
	}
	l.links = append(l.links, k)
	a.addAddrs(k.addrA)
	for _, b := range bs {
		b.addAddrs(k.addrB)
	}
	return k, nil
}

func (h *Host) addAddrs(a Addrs) {
	h.mu.Lock()
	h.addrs = append(h.addrs, a)
	h.mu.Unlock()
}

// openTUN creates TUN device name in h (IFF_TUN|IFF_NO_PI, opened from a
// thread inside h's namespace), sets its MTU and addresses and brings it up.
// The returned file is non-blocking and served by the Go netpoller.
func (h *Host) openTUN(name string, mtu int, addrs Addrs) (*os.File, error) {
	var fd int
	err := h.Do(func() error {
		var err error
		fd, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(name)
		if err == nil {
			ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
			err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
		}
		if err != nil {
			unix.Close(fd)
			return fmt.Errorf("TUNSETIFF %s: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("netlab: tun %s in %s: %w", name, h.ns, err)
	}
	f := os.NewFile(uintptr(fd), h.ns+"/"+name)
	if err := h.configure(name, mtu, addrs); err != nil {
		f.Close()
		return nil, fmt.Errorf("netlab: tun %s in %s: %w", name, h.ns, err)
	}
	return f, nil
}

// addVeth creates a veth pair named name in h and in b (its peer end), and configures both ends.
// The pair goes away with the namespaces.
func (h *Host) addVeth(name string, mtu int, addrs Addrs, b *Host, addrsB Addrs) error {
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: name, MTU: mtu},
		PeerName:      name,
		PeerNamespace: netlink.NsFd(b.sys.nsFD),
	}
	if err := h.sys.nl.LinkAdd(veth); err != nil {
		return fmt.Errorf("netlab: veth %s from %s to %s: %w", name, h.ns, b.ns, err)
	}
	if err := h.configure(name, mtu, addrs); err != nil {
		return fmt.Errorf("netlab: veth %s in %s: %w", name, h.ns, err)
	}
	if err := b.configure(name, mtu, addrsB); err != nil {
		return fmt.Errorf("netlab: veth %s in %s: %w", name, b.ns, err)
	}
	return nil
}

// configure sets the MTU and addresses of device name in h and brings it up.
func (h *Host) configure(name string, mtu int, addrs Addrs) error {
	fail := func(what string, err error) error { return fmt.Errorf("%s: %w", what, err) }
	link, err := h.sys.nl.LinkByName(name)
	if err != nil {
		return fail("find link", err)
	}
	if err := h.sys.nl.LinkSetMTU(link, mtu); err != nil {
		return fail("set MTU", err)
	}
	for _, a := range []struct {
		ip   net.IP
		bits int
		flag int
	}{
		{addrs.V4.AsSlice(), 24, 0},
		{addrs.V6.AsSlice(), 64, unix.IFA_F_NODAD},
	} {
		n := &net.IPNet{IP: a.ip, Mask: net.CIDRMask(a.bits, len(a.ip)*8)}
		if err := h.sys.nl.AddrAdd(link, &netlink.Addr{IPNet: n, Flags: a.flag}); err != nil {
			return fail("add address "+n.String(), err)
		}
	}
	if err := h.sys.nl.LinkSetUp(link); err != nil {
		return fail("link up", err)
	}
	return nil
}

// Do runs fn on a locked OS thread that has joined the host's network
// namespace, and returns its error. Sockets fn creates (listeners,
// dialled connections) belong to the namespace for good and may be used
// from any goroutine afterwards; processes fn starts run in it too. The
// thread goes back to its namespace afterwards, or exits if it cannot. A
// panic in fn comes back as an error; fn must not call t.FailNow.
func (h *Host) Do(fn func() error) error {
	if h.sys.nsFD < 0 {
		return fmt.Errorf("netlab: host %s is closed", h.ns)
	}
	res := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			res <- fmt.Errorf("netlab: open own namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(h.sys.nsFD, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			res <- fmt.Errorf("netlab: enter %s: %w", h.ns, err)
			return
		}
		result := errors.New("netlab: Do function did not return (runtime.Goexit?)")
		defer func() {
			if r := recover(); r != nil {
				result = fmt.Errorf("netlab: panic in %s: %v\n%s", h.ns, r, debug.Stack())
			}
			if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
				// Leave the thread locked so it exits instead of
				// running other goroutines in the wrong namespace.
				result = errors.Join(result, fmt.Errorf("netlab: leave %s: %w", h.ns, err))
			} else {
				runtime.UnlockOSThread()
			}
			res <- result
		}()
		result = fn()
	}()
	return <-res
}

// Command returns a command that runs name with args inside the host's
// namespace (through `ip netns exec`, which executes name in place, so
// cmd.Process is the program itself). The caller starts it and waits for
// it; Lab.Close kills it if it still runs and reaps it if nobody waited.
func (h *Host) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(h.lab.ctx, "ip", append([]string{"netns", "exec", h.ns, name}, args...)...)
	cmd.WaitDelay = 2 * time.Second
	h.lab.mu.Lock()
	h.lab.cmds = append(h.lab.cmds, cmd)
	h.lab.mu.Unlock()
	return cmd
}

var sysctlKeyRE = regexp.MustCompile(`^[a-zA-Z0-9_]+(\.[a-zA-Z0-9_-]+)+$`)

// Sysctl writes value to the sysctl key ("net.ipv4.tcp_fastopen") inside
// the host's namespace. Only per-namespace keys (net.*) differ per host.
func (h *Host) Sysctl(key, value string) error {
	return h.Do(func() error { return writeSysctl(key, value) })
}

func writeSysctl(key, value string) error {
	if !sysctlKeyRE.MatchString(key) {
		return fmt.Errorf("netlab: bad sysctl key %q", key)
	}
	p := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	if err := os.WriteFile(p, []byte(value), 0); err != nil {
		return fmt.Errorf("netlab: sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

// ReadSysctl reads a sysctl key inside the host's namespace.
func (h *Host) ReadSysctl(key string) (string, error) {
	if !sysctlKeyRE.MatchString(key) {
		return "", fmt.Errorf("netlab: bad sysctl key %q", key)
	}
	var v []byte
	err := h.Do(func() error {
		var err error
		v, err = os.ReadFile("/proc/sys/" + strings.ReplaceAll(key, ".", "/"))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("netlab: read sysctl %s in %s: %w", key, h.ns, err)
	}
	return strings.TrimSpace(string(v)), nil
}

// TcpExt returns the host's TcpExt counters from /proc/net/netstat
// (TCPFastOpenActive, TCPFastOpenPassive, TCPFastOpenCookieReqd, ...).
// It reads /proc/thread-self/net/netstat from a thread inside the
// namespace: /proc/net follows the process's main thread, not the caller.
func (h *Host) TcpExt() (map[string]uint64, error) {
	var raw []byte
	err := h.Do(func() error {
		var err error
		raw, err = os.ReadFile("/proc/thread-self/net/netstat")
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlab: read netstat in %s: %w", h.ns, err)
	}
	m, err := parseNetstat(raw, "TcpExt")
	if err != nil {
		return nil, fmt.Errorf("netlab: netstat in %s: %w", h.ns, err)
	}
	return m, nil
}

// Close tears the lab down: it stops the forwarders and closes the TUN
// devices, kills every process still running in the lab's namespaces
// (commands from Host.Command are reaped), and deletes the namespaces. It
// is idempotent; later calls return the first call's error.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		hosts, links, cmds := l.hosts, l.links, l.cmds
		l.mu.Unlock()

		var errs []error
		l.cancel() // kills started commands that are not yet waited for
		for _, k := range links {
			if k.fw == nil { // veth: goes with the namespaces
				continue
			}
			if err := k.fw.stop(); err != nil {
				errs = append(errs, fmt.Errorf("link %s: %w", k.ifname, err))
			}
		}
		for _, h := range hosts {
			if err := killNamespaceProcs(h.sys.nsFD); err != nil {
				errs = append(errs, fmt.Errorf("host %s: %w", h.ns, err))
			}
		}
		for _, c := range cmds {
			if c.Process != nil && c.ProcessState == nil {
				_ = c.Wait() // killed above; this reaps it
			}
		}
		for _, h := range hosts {
			if h.sys.nl != nil {
				h.sys.nl.Close()
			}
			if h.sys.nsFD >= 0 {
				unix.Close(h.sys.nsFD)
				h.sys.nsFD = -1
			}
			if err := removeNamedNS(h.ns); err != nil {
				errs = append(errs, fmt.Errorf("host %s: %w", h.ns, err))
			}
		}
		if len(errs) > 0 {
			l.closeErr = fmt.Errorf("netlab: close %s: %w", l.name, errors.Join(errs...))
		}
	})
	return l.closeErr
}

// nsInode returns the inode that identifies the namespace fd refers to.
func nsInode(fd int) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// killNamespaceProcs SIGKILLs every process (other than this one) whose
// network namespace is the one fd refers to, and waits up to 5 s for them
// to die.
func killNamespaceProcs(fd int) error {
	ino, err := nsInode(fd)
	if err != nil {
		return fmt.Errorf("stat namespace: %w", err)
	}
	return killProcsInNetns(ino)
}

func killProcsInNetns(ino uint64) error {
	want := fmt.Sprintf("net:[%d]", ino)
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := procsInNetns(want)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v survive SIGKILL", pids)
		}
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// procsInNetns lists live processes whose /proc/PID/ns/net is want.
// Zombies have no namespace left and are not listed.
func procsInNetns(want string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if link, err := os.Readlink("/proc/" + e.Name() + "/ns/net"); err == nil && link == want {
			pids = append(pids, pid)
		}
	}
	return pids
}

// LabNamespaces lists the lab namespaces in /run/netns (all labs, all processes).
func LabNamespaces() ([]string, error) {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("netlab: list %s: %w", netnsDir, err)
	}
	var names []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), NamePrefix) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// ownerPID extracts the pid from a lab namespace name, or 0.
func ownerPID(name string) int {
	rest, ok := strings.CutPrefix(name, NamePrefix)
	if !ok {
		return 0
	}
	s, _, _ := strings.Cut(rest, "-")
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

func pidAlive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// SweepStale removes lab namespaces whose creating process is gone (a test
// binary that crashed or was killed), after killing every process left in
// them. It returns the names it removed. Labs of running processes are
// left alone, so parallel test binaries do not disturb each other.
func SweepStale() ([]string, error) {
	return sweep(func(name string) bool {
		pid := ownerPID(name)
		return pid != 0 && !pidAlive(pid)
	})
}

// SweepAll removes every lab namespace, including those of running labs
// (whose forwarders then carry nothing), after killing the processes in
// them. `fastrojan lab down` uses it.
func SweepAll() ([]string, error) {
	return sweep(func(string) bool { return true })
}

func sweep(match func(name string) bool) ([]string, error) {
	names, err := LabNamespaces()
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, name := range names {
		if !match(name) {
			continue
		}
		p := filepath.Join(netnsDir, name)
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err == nil {
			if err := killProcsInNetns(st.Ino); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
		if err := removeNamedNS(name); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		removed = append(removed, name)
	}
	if len(errs) > 0 {
		return removed, fmt.Errorf("netlab: sweep: %w", errors.Join(errs...))
	}
	return removed, nil
}
