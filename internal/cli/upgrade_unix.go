//go:build unix

package cli

import "syscall"

// onUpgradeSignal calls fn on every SIGUSR2 until stop is called.
func onUpgradeSignal(fn func()) (stop func()) { return onSignal(syscall.SIGUSR2, fn) }
