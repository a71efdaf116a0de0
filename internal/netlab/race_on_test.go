//go:build race

package netlab

// raceEnabled: the race detector slows everything several-fold, so timing
// assertions are skipped (the behaviour checks still run).
const raceEnabled = true
