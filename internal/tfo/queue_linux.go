package tfo

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ListenBacklog returns net.core.somaxconn of the calling thread's network namespace: the backlog
// Go's listen() asks for and the bound the kernel puts on it and on the TFO queue. 4096 (the
// kernel's default since 5.4) when it cannot be read.
func ListenBacklog() int {
	b, err := os.ReadFile("/proc/sys/net/core/somaxconn")
	if err != nil {
		return 4096
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || v < 1 {
		return 4096
	}
	return v
}

// ListenerQueue reads from the kernel the queue limits in force on a listener (a *net.TCPListener
// or anything with SyscallConn).
func ListenerQueue(ln any) (QueueInfo, error) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return QueueInfo{}, fmt.Errorf("listener queue: %T has no socket", ln)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return QueueInfo{}, fmt.Errorf("listener queue: %w", err)
	}
	var q QueueInfo
	var qerr, ierr error
	var info *unix.TCPInfo
	if err := rc.Control(func(fd uintptr) {
		q.TFOQueue, qerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_FASTOPEN)
		info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil {
		return QueueInfo{}, fmt.Errorf("listener queue: %w", err)
	}
	if err := errors.Join(qerr, ierr); err != nil {
		return QueueInfo{}, fmt.Errorf("listener queue: %w", err)
	}
	// For a listener, tcp_get_info puts sk_ack_backlog in tcpi_unacked and sk_max_ack_backlog in
	// tcpi_sacked.
	q.Backlog, q.Accept = int(info.Sacked), int(info.Unacked)
	return q, nil
}
