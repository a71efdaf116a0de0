package doctor

import (
	"fmt"
	"strconv"

	"github.com/fastrojan/fastrojan/internal/tfo"
)

// Env is where the checks look: the network namespace of this process by default, or the one Do
// enters (a netlab host's Do in tests and in `bench --lab`). Everything that reads per-namespace
// state (sysctls, counters, the cookie cache) or makes sockets goes through Do, since a socket or a
// /proc/sys/net file belongs to the namespace of the thread that opened it.
type Env struct {
	// Do runs fn in the namespace to inspect. Nil runs fn on the calling goroutine.
	Do func(fn func() error) error
}

func (e Env) do(fn func() error) error {
	if e.Do == nil {
		return fn()
	}
	return e.Do(fn)
}

// Sysctl reads a sysctl ("net.ipv4.tcp_fastopen") in the environment's namespace.
func (e Env) Sysctl(key string) (string, error) {
	var v string
	err := e.do(func() (err error) { v, err = readSysctl(key); return err })
	return v, err
}

// SysctlInt reads a numeric sysctl.
func (e Env) SysctlInt(key string) (int, error) {
	s, err := e.Sysctl(key)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("sysctl %s: %q is not a number", key, s)
	}
	return n, nil
}

// TcpExt returns the TcpExt counters of the environment's namespace. It reads
// /proc/thread-self/net/netstat from inside Do: /proc/net follows the process's main thread.
func (e Env) TcpExt() (map[string]uint64, error) {
	var raw []byte
	if err := e.do(func() (err error) { raw, err = readNetstat(); return err }); err != nil {
		return nil, err
	}
	return tfo.ParseNetstat(raw, "TcpExt")
}
