package e2e

import (
	"fmt"
	"os/exec"
	"testing"
)

// These tests put V2Ray (Debian's v2ray 4.34, whose Trojan implementation Xray inherited) on the
// other end, for TCP and UDP in both directions: a second independent implementation of the wire
// format besides trojan-gfw. V2Ray carries UDP payloads in 2 KiB buffers and cuts longer datagrams
// (seen here: 4000 bytes came back as 2032 or 2048), so the UDP checks stay at or below 2000 bytes.

// v2rayUDPSizes are datagram sizes V2Ray passes whole.
var v2rayUDPSizes = []int{1, 100, 1400, 2000}

// v2rayPath returns v2ray's path or skips.
func v2rayPath(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("v2ray")
	if err != nil {
		t.Skip("interop test needs V2Ray on PATH (Debian: apt-get install v2ray)")
	}
	return p
}

// v2rayTLS is V2Ray's streamSettings for TLS.
func v2rayTLS(settings map[string]any) map[string]any {
	return map[string]any{"network": "tcp", "security": "tls", "tlsSettings": settings}
}

// startV2ray runs v2ray with cfg and waits for addr to listen.
func startV2ray(t *testing.T, dir string, cfg map[string]any, addr string) {
	t.Helper()
	cfg["log"] = map[string]any{"loglevel": "warning"}
	p := start(t, v2rayPath(t), "-config", writeJSON(t, dir, "v2ray.json", cfg))
	waitListening(t, p, addr)
}

func TestInteropV2RayClientOurServer(t *testing.T) {
	v2rayPath(t)
	dir := t.TempDir()
	cert, key := certFiles(t, dir)
	sport, cport := freePort(t), freePort(t)
	ours := start(t, binary, "-c", writeJSON(t, dir, "server.json", serverConfig(sport, "127.0.0.1:1", "interop-pw", cert, key)))
	waitListening(t, ours, fmt.Sprintf("127.0.0.1:%d", sport))

	socks := fmt.Sprintf("127.0.0.1:%d", cport)
	startV2ray(t, dir, map[string]any{
		"inbounds": []any{map[string]any{
			"listen": "127.0.0.1", "port": cport, "protocol": "socks",
			"settings": map[string]any{"udp": true, "ip": "127.0.0.1"},
		}},
		"outbounds": []any{map[string]any{
			"protocol":       "trojan",
			"settings":       map[string]any{"servers": []any{map[string]any{"address": "127.0.0.1", "port": sport, "password": "interop-pw"}}},
			"streamSettings": v2rayTLS(map[string]any{"serverName": "localhost", "allowInsecure": true}),
		}},
	}, socks)
	checkThroughProxy(t, socks)
	checkUDPEcho(t, socks, v2rayUDPSizes...)
}

func TestInteropOurClientV2RayServer(t *testing.T) {
	v2rayPath(t)
	dir := t.TempDir()
	cert, key := certFiles(t, dir)
	sport, cport := freePort(t), freePort(t)
	startV2ray(t, dir, map[string]any{
		"inbounds": []any{map[string]any{
			"listen": "127.0.0.1", "port": sport, "protocol": "trojan",
			"settings": map[string]any{"clients": []any{map[string]any{"password": "interop-pw"}}},
			"streamSettings": v2rayTLS(map[string]any{
				"certificates": []any{map[string]any{"certificateFile": cert, "keyFile": key}},
			}),
		}},
		"outbounds": []any{map[string]any{"protocol": "freedom"}},
	}, fmt.Sprintf("127.0.0.1:%d", sport))

	ours := start(t, binary, "-c", writeJSON(t, dir, "client.json", clientConfig(cport, sport, "interop-pw", cert)))
	socks := fmt.Sprintf("127.0.0.1:%d", cport)
	waitListening(t, ours, socks)
	checkThroughProxy(t, socks)
	checkUDPEcho(t, socks, v2rayUDPSizes...)
}
