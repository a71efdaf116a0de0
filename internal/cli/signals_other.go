//go:build !unix

package cli

// onReload does nothing where there is no SIGUSR1: restart the process to load a new certificate.
func onReload(func()) (stop func()) { return func() {} }

// onHangup does nothing where there is no SIGHUP: restart the process to load a new farm secret.
func onHangup(func()) (stop func()) { return func() {} }
