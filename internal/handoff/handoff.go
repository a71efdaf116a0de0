// Package handoff replaces a running server binary without dropping a connection (a SIGUSR2-style
// hand-off, as nginx and HAProxy do it). The running process starts its executable anew (by the path
// it was started from, so a replaced file is the new version) and hands it its listening sockets as
// inherited file descriptors; the new process serves on those very sockets (their accept queues
// included, so no connection waiting there is lost and no new one is refused) and says when it is
// ready; the old process then stops accepting and drains its open tunnels.
//
// The protocol between the two processes: FASTROJAN_HANDOFF_LISTENERS lists the listeners' config
// addresses, comma-separated, which are file descriptors 3, 4, ... in that order;
// FASTROJAN_HANDOFF_READY names the descriptor of a pipe on which the new process writes one byte once
// it serves. Both variables are removed from the environment once read.
package handoff

import "time"

const (
	envListeners = "FASTROJAN_HANDOFF_LISTENERS"
	envReady     = "FASTROJAN_HANDOFF_READY"
)

// DefaultReadyTimeout bounds how long Upgrade waits for the new process to be ready.
const DefaultReadyTimeout = 30 * time.Second
