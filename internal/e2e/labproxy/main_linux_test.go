package labproxy_test

import (
	"testing"

	"github.com/fastrojan/fastrojan/internal/tfo/tfotest"
)

func TestMain(m *testing.M) { tfotest.Main(m) }

// Helpers shared with package tfo's lab tests.
var (
	host        = tfotest.Host
	cacheCookie = tfotest.CacheCookie
	closedPort  = tfotest.ClosedPort
)

type logBuf = tfotest.LogBuf
