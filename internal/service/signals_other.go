//go:build !unix

package service

// OnReload does nothing where there is no SIGUSR1: restart the process to load a new certificate.
func OnReload(func()) (stop func()) { return func() {} }

// OnHangup does nothing where there is no SIGHUP: restart the process to load a new farm secret.
func OnHangup(func()) (stop func()) { return func() {} }
