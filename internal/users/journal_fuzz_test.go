package users

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fastrojan/fastrojan/internal/trojan"
)

// FuzzReadJournal: whatever a journal file holds (a torn write, another program's file), reading it
// either fails or yields well-formed counts; it never panics.
func FuzzReadJournal(f *testing.F) {
	hash := trojan.HashPassword("seed")
	h := string(hash[:])
	f.Add([]byte(`{"version":1,"inflight":{"id":"abc","deltas":[{"hash":"` + h + `","download":1,"upload":2}]},"pending":[{"hash":"` + h + `","download":3,"upload":4}]}`))
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"pending":[{"hash":"zz","download":-1}]}`))
	f.Add([]byte(`{"version":1,"inflight":{"id":"","deltas":[]}}`))
	f.Add([]byte(``))
	path := filepath.Join(f.TempDir(), "journal.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		j, err := readJournal(path)
		if err != nil {
			return
		}
		all := j.Pending
		if j.Inflight != nil {
			if j.Inflight.ID == "" {
				t.Fatal("batch without id accepted")
			}
			all = append(all, j.Inflight.Deltas...)
		}
		for _, d := range all {
			if d.Download < 0 || d.Upload < 0 || d.Hash.IsZero() {
				t.Fatalf("bad row accepted: %+v", d)
			}
		}
	})
}
