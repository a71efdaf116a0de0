//go:build !unix

package cli

// onReload does nothing where there is no SIGUSR1: restart the process to load a new certificate.
func onReload(func()) (stop func()) { return func() {} }
