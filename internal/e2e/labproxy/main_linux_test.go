package labproxy_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/fastrojan/fastrojan/internal/netlab"
	"github.com/fastrojan/fastrojan/internal/tfo/tfotest"
)

func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		if removed, err := netlab.SweepStale(); err != nil || len(removed) > 0 {
			fmt.Fprintf(os.Stderr, "netlab: swept stale namespaces %v (err %v)\n", removed, err)
		}
	}
	os.Exit(m.Run())
}

// Helpers shared with package tfo's lab tests.
var (
	host        = tfotest.Host
	cacheCookie = tfotest.CacheCookie
	closedPort  = tfotest.ClosedPort
)

type logBuf = tfotest.LogBuf
