//go:build !linux

package doctor

const tfoPlatform = false
