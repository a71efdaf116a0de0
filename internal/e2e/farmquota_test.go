package e2e

import (
	binenc "encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/users/userdb/testdb"
)

// TestQuotaAcrossFarm: two server processes on one MariaDB, with the default refresh (2 s) and a
// flush interval too long to help (1 h). A user crosses its quota on server A; 5 s later a new
// connection of that user on server B gets the fallback site. The same for a user deleted from the
// table. Before, B's view waited for A's next flush.
func TestQuotaAcrossFarm(t *testing.T) {
	db := testdb.MySQL(t)
	e := newAcctEnv(t, db)
	e.flush = "1h"
	const quota = 4 << 20
	db.AddUser(t, "limited", "pw-limited", quota)
	db.AddUser(t, "doomed", "pw-doomed", -1)
	start := func(name string) string {
		port := freePort(t)
		cfg := e.config(port, "")
		cfg["fastrojan"].(map[string]any)["users"].(map[string]any)["refresh"] = "2s"
		p := start(t, binary, "-c", writeJSON(t, e.dir, name+".json", cfg))
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		waitListening(t, p, addr)
		return addr
	}
	a, b := start("a"), start("b")
	// Both admit both users at first.
	for _, srv := range []string{a, b} {
		for _, pw := range []string{"pw-limited", "pw-doomed"} {
			if err := transfer(srv, pw, e.sink, 16, 100); err != nil {
				t.Fatalf("%s via %s before: %v", pw, srv, err)
			}
		}
	}

	// Over quota on A: a download that never ends on its own, until A cuts it.
	c, err := dialTrojan(a)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	hdr := make([]byte, 16)
	binenc.BigEndian.PutUint64(hdr[:8], 16)
	binenc.BigEndian.PutUint64(hdr[8:], streamForever)
	if _, err := c.Write(request("pw-limited", e.sink, hdr)); err != nil {
		t.Fatal(err)
	}
	got := int64(2 * (16 + 100)) // the transfers above
	var crossed time.Time
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		got += int64(n)
		if crossed.IsZero() && got+16 >= quota {
			crossed = time.Now()
		}
		if err != nil {
			break
		}
	}
	if crossed.IsZero() {
		t.Fatalf("A ended the connection after %d bytes, before the quota of %d", got, quota)
	}
	t.Logf("A cut the over-quota connection %v after the crossing", time.Since(crossed).Round(time.Millisecond))
	time.Sleep(time.Until(crossed.Add(5 * time.Second)))
	expectFallback(t, b, "pw-limited")

	deleted := time.Now()
	db.Exec(t, "DELETE FROM users WHERE username = 'doomed'")
	time.Sleep(time.Until(deleted.Add(5 * time.Second)))
	expectFallback(t, b, "pw-doomed")
	expectFallback(t, a, "pw-doomed")
	if err := transfer(b, "pw-limited", e.sink, 16, 10); err == nil {
		t.Error("B still relays for the user over quota")
	}
}
