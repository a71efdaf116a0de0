//go:build !race

package netlab

const raceEnabled = false
