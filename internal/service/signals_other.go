//go:build !unix

package service

// OnReload does nothing where there is no SIGUSR1: restart the process to load a new certificate.
func OnReload(func()) (stop func()) { return func() {} }

// OnHangup does nothing where there is no SIGHUP: restart the process to load a new farm secret.
func OnHangup(func()) (stop func()) { return func() {} }

// OnUpgrade does nothing where there is no SIGUSR2: there is no hand-off to a new binary.
func OnUpgrade(func()) (stop func()) { return func() {} }
