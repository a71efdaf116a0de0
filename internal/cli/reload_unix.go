//go:build unix

package cli

import (
	"os"
	"os/signal"
	"syscall"
)

// onReload calls fn on every SIGUSR1 (trojan-gfw reloads its certificate on it) until stop is called.
func onReload(fn func()) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-ch:
				fn()
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}
