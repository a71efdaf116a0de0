//go:build unix

package cli

import (
	"os"
	"os/signal"
	"syscall"
)

// onHangup calls fn on every SIGHUP until stop is called; stop waits for a running fn to return.
func onHangup(fn func()) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
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
