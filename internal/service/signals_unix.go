//go:build unix

package service

import (
	"os"
	"os/signal"
	"syscall"
)

// OnReload calls fn on every SIGUSR1 (trojan-gfw reloads its certificate on it) until stop is called.
func OnReload(fn func()) (stop func()) { return onSignal(syscall.SIGUSR1, fn) }

// OnHangup calls fn on every SIGHUP (the farm secret is re-read) until stop is called.
func OnHangup(fn func()) (stop func()) { return onSignal(syscall.SIGHUP, fn) }

// OnUpgrade calls fn on every SIGUSR2 (hand the listeners to a new binary) until stop is called.
func OnUpgrade(fn func()) (stop func()) { return onSignal(syscall.SIGUSR2, fn) }

// onSignal calls fn on every sig until stop is called; stop waits for a running fn to return.
func onSignal(sig os.Signal, fn func()) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sig)
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-ch:
				fn()
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(ch); close(done); <-stopped }
}
