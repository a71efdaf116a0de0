//go:build !unix

package cli

// onHangup does nothing where there is no SIGHUP: restart the process to load a new farm secret.
func onHangup(func()) (stop func()) { return func() {} }
