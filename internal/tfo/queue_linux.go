package tfo

import (
	"errors"
	"fmt"
	"net"
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

// tcpSYNRecv is tcpi_state of a server-side connection whose handshake has not completed.
const tcpSYNRecv = 3

// ResetIfHalfOpen prepares c, a server's accepted connection about to be closed, so that Close
// resets it when the client never completed the TCP handshake (TCP state still SYN_RECV: a TFO
// child whose final ACK never came). A plain close would leave the child, and its TFO queue slot,
// to the kernel's SYN-ACK retries (about two minutes); a reset frees both at once. It reports
// whether it did so.
func ResetIfHalfOpen(c net.Conn) bool {
	info, err := kernelInfo(c)
	if err != nil || info.State != tcpSYNRecv {
		return false
	}
	rc, ok := syscallConn(c)
	if !ok {
		return false
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	}); err != nil || serr != nil {
		return false
	}
	return true
}
