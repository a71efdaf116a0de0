//go:build !unix

package cli

// onUpgradeSignal does nothing: there is no SIGUSR2 and no hand-off here.
func onUpgradeSignal(fn func()) (stop func()) { return func() {} }
