package e2e

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Our client with its default pool against V2Ray's Trojan server (Debian's v2ray 4.34; Xray kept its
// default policy), which gives a connection 4 s to send its request ("handshake": 4) and then closes
// it: streams at random gaps of 0.5–8 s from two sequences for 30 s all succeed.
func TestPoolAgainstV2RayHandshakePolicy(t *testing.T) {
	v2rayPath(t)
	dir := t.TempDir()
	cert, key := certFiles(t, dir)
	sport, cport := freePort(t), freePort(t)
	startV2ray(t, dir, map[string]any{
		"inbounds": []any{map[string]any{
			"listen": "127.0.0.1", "port": sport, "protocol": "trojan",
			"settings": map[string]any{"clients": []any{map[string]any{"password": "pool-pw"}}},
			"streamSettings": v2rayTLS(map[string]any{
				"certificates": []any{map[string]any{"certificateFile": cert, "keyFile": key}},
			}),
		}},
		"outbounds": []any{map[string]any{"protocol": "freedom"}},
	}, fmt.Sprintf("127.0.0.1:%d", sport))
	cfg := clientConfig(cport, sport, "pool-pw", cert)
	mport := freePort(t)
	cfg["fastrojan"] = map[string]any{"metrics_listen": fmt.Sprintf("127.0.0.1:%d", mport)}
	ours := start(t, binary, "-c", writeJSON(t, dir, "client.json", cfg))
	socks := fmt.Sprintf("127.0.0.1:%d", cport)
	waitListening(t, ours, socks)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "page") }))
	defer origin.Close()

	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(30 * time.Second)
	for seq := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(seq)))
			for {
				gap := 500*time.Millisecond + time.Duration(rng.Int64N(int64(7500*time.Millisecond)))
				if time.Now().Add(gap).After(end) {
					return
				}
				time.Sleep(gap)
				conn, err := socksDialErr(socks, origin.Listener.Addr().String())
				if err != nil {
					failed.Add(1)
					t.Errorf("socks after a %v gap: %v", gap.Round(time.Millisecond), err)
					continue
				}
				status, body, err := httpGetVia(conn, "origin", "/")
				conn.Close()
				if err != nil || status != "HTTP/1.1 200 OK" || string(body) != "page" {
					failed.Add(1)
					t.Errorf("stream after a %v gap: %q %q %v", gap.Round(time.Millisecond), status, body, err)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", mport))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b := make([]byte, 1<<20)
	n, _ := io.ReadFull(resp.Body, b)
	m := string(b[:n])
	pooled := metric(m, `fastrojan_pool_streams_total{result="hit"}`) + metric(m, `fastrojan_pool_streams_total{result="joined"}`)
	t.Logf("%d streams ok, %d failed; %v rode a spare; spares closed by V2Ray %v, retried %v", ok.Load(), failed.Load(), pooled,
		metric(m, `fastrojan_pool_spares_total{event="peer_closed"}`), metric(m, "fastrojan_pool_retries_total"))
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Fatalf("%d streams failed, %d ok", failed.Load(), ok.Load())
	}
	if pooled <= 0 {
		t.Errorf("no stream rode a spare")
	}
}
