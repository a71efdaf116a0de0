//go:build unix

package handoff

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

var inherited struct {
	once  sync.Once
	lns   map[string]net.Listener
	ready *os.File
	err   error
}

func load() {
	inherited.once.Do(func() {
		addrs, ok := os.LookupEnv(envListeners)
		readyFD := os.Getenv(envReady)
		_ = os.Unsetenv(envListeners)
		_ = os.Unsetenv(envReady)
		if !ok {
			return
		}
		inherited.lns = map[string]net.Listener{}
		for i, addr := range strings.Split(addrs, ",") {
			if addr == "" {
				continue
			}
			f := os.NewFile(uintptr(3+i), "inherited listener "+addr)
			ln, err := net.FileListener(f) // a dup: f is closed right after
			_ = f.Close()
			if err != nil {
				inherited.err = fmt.Errorf("handoff: inherited listener %s (fd %d): %w", addr, 3+i, err)
				return
			}
			inherited.lns[addr] = ln
		}
		if n, err := strconv.Atoi(readyFD); err == nil && n > 2 {
			inherited.ready = os.NewFile(uintptr(n), "handoff ready pipe")
		}
	})
}

// Inherited reports whether this process was started by a hand-off.
func Inherited() bool {
	load()
	return inherited.lns != nil
}

// Listener returns the listener the previous process served at addr (its config address), or nil
// when there is none: not started by a hand-off, or the address changed. Each is returned once.
func Listener(addr string) (net.Listener, error) {
	load()
	if inherited.err != nil {
		return nil, inherited.err
	}
	ln := inherited.lns[addr]
	delete(inherited.lns, addr)
	return ln, nil
}

// Ready tells the previous process that this one serves; that one then stops accepting and drains.
// Listeners handed over but not claimed with Listener are closed. Without a hand-off it does nothing.
func Ready() error {
	load()
	for addr, ln := range inherited.lns {
		_ = ln.Close()
		delete(inherited.lns, addr)
	}
	if inherited.ready == nil {
		return nil
	}
	_, err := inherited.ready.Write([]byte{1})
	_ = inherited.ready.Close()
	inherited.ready = nil
	if err != nil {
		return fmt.Errorf("handoff: tell the previous process: %w", err)
	}
	return nil
}

// Executable is the path to start for an upgrade: the program as it was invoked (os.Args[0],
// made absolute), so that a binary replaced at that path is what starts.
func Executable() (string, error) {
	p, err := exec.LookPath(os.Args[0])
	if err != nil {
		return "", fmt.Errorf("handoff: find %s: %w", os.Args[0], err)
	}
	if !strings.HasPrefix(p, "/") {
		wd, err := os.Getwd()
		if err != nil {
			return "", fmt.Errorf("handoff: %w", err)
		}
		p = wd + "/" + p
	}
	return p, nil
}

// Upgrade starts path with args (the new binary), handing it lns keyed by their config address, and
// waits until it is ready (Ready) or ctx ends. It returns the new process, which then runs on its own;
// the caller stops accepting on lns and drains. On failure the new process is killed and the caller
// carries on as before. stdout and stderr are the new process's (nil: this process's own).
func Upgrade(ctx context.Context, path string, args []string, lns map[string]net.Listener, stdout, stderr io.Writer) (*os.Process, error) {
	var addrs []string
	var files []*os.File
	defer func() {
		for _, f := range files {
			_ = f.Close()
		}
	}()
	for addr, ln := range lns {
		f, err := dupListener(ln)
		if err != nil {
			return nil, fmt.Errorf("handoff: listener %s: %w", addr, err)
		}
		addrs = append(addrs, addr)
		files = append(files, f)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("handoff: %w", err)
	}
	defer r.Close()
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(),
		envListeners+"="+strings.Join(addrs, ","),
		envReady+"="+strconv.Itoa(3+len(files)))
	cmd.ExtraFiles = append(files, w)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if stdout != nil {
		cmd.Stdout = stdout
	}
	if stderr != nil {
		cmd.Stderr = stderr
	}
	err = cmd.Start()
	_ = w.Close()
	if err != nil {
		return nil, fmt.Errorf("handoff: start %s: %w", path, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }() // reaps it; the new process outlives this function
	got := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := io.ReadFull(r, b[:])
		got <- err
	}()
	select {
	case err = <-got:
		if err == nil {
			return cmd.Process, nil
		}
		err = fmt.Errorf("handoff: %s ended before it was ready", path)
	case <-ctx.Done():
		err = fmt.Errorf("handoff: %s not ready: %w", path, ctx.Err())
	}
	_ = cmd.Process.Kill()
	<-exited
	return nil, err
}

// dupListener returns a duplicate of ln's socket descriptor, without close-on-exec once passed in
// ExtraFiles.
func dupListener(ln net.Listener) (*os.File, error) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("%T has no socket: %w", ln, errors.ErrUnsupported)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var fd int
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = syscall.Dup(int(s)) }); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, fmt.Errorf("dup: %w", derr)
	}
	syscall.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), "listener"), nil
}
