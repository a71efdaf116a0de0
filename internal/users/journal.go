package users

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/fastrojan/fastrojan/internal/trojan"
)

// The journal is one JSON file holding every count not yet confirmed in the database: the batch in
// flight (with its ID, so a retry after a restart stays idempotent) and the counts not yet batched. It
// is replaced atomically (write, fsync, rename), so it is always one consistent state; a file with
// nothing to write is removed.

type journal struct {
	Version  int           `json:"version"`
	Inflight *Batch        `json:"-"`
	Pending  []Delta       `json:"-"`
	RawBatch *journalBatch `json:"inflight,omitempty"`
	RawPend  []journalRow  `json:"pending,omitempty"`
}

type journalBatch struct {
	ID     string       `json:"id"`
	Deltas []journalRow `json:"deltas"`
}

// journalRow spells the hash out in full: trojan.Hash marshals to a redacted form on purpose.
type journalRow struct {
	Hash     string `json:"hash"`
	Download int64  `json:"download"`
	Upload   int64  `json:"upload"`
}

const journalVersion = 1

func toRows(ds []Delta) []journalRow {
	rows := make([]journalRow, 0, len(ds))
	for _, d := range ds {
		rows = append(rows, journalRow{Hash: string(d.Hash[:]), Download: d.Download, Upload: d.Upload})
	}
	return rows
}

func fromRows(path string, rows []journalRow) ([]Delta, error) {
	ds := make([]Delta, 0, len(rows))
	for i, r := range rows {
		h, err := trojan.ParseHash(r.Hash)
		if err != nil {
			return nil, fmt.Errorf("journal %s: row %d: %w", path, i, err)
		}
		if r.Download < 0 || r.Upload < 0 {
			return nil, fmt.Errorf("journal %s: row %d: negative count", path, i)
		}
		ds = append(ds, Delta{Hash: h, Download: r.Download, Upload: r.Upload})
	}
	return ds, nil
}

// readJournal loads path; a missing file is an empty journal. A damaged file is an error: starting
// without it would lose its counts silently.
func readJournal(path string) (journal, error) {
	var j journal
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return j, nil
	}
	if err != nil {
		return j, fmt.Errorf("read journal: %w", err)
	}
	if err := json.Unmarshal(b, &j); err != nil {
		return j, fmt.Errorf("journal %s is damaged (move it away to start without its counts): %w", path, err)
	}
	if j.Version != journalVersion {
		return j, fmt.Errorf("journal %s: version %d, want %d", path, j.Version, journalVersion)
	}
	if j.RawBatch != nil {
		if j.RawBatch.ID == "" {
			return j, fmt.Errorf("journal %s: batch without an id", path)
		}
		ds, err := fromRows(path, j.RawBatch.Deltas)
		if err != nil {
			return j, err
		}
		j.Inflight = &Batch{ID: j.RawBatch.ID, Deltas: ds}
	}
	if j.Pending, err = fromRows(path, j.RawPend); err != nil {
		return j, err
	}
	return j, nil
}

// writeJournal saves the unconfirmed counts if they changed since the last write. Caller holds mu.
// A failure is logged and retried at the next tick; counts stay in memory meanwhile.
func (l *Ledger) writeJournal() {
	if l.opts.Journal == "" || !l.dirty {
		return
	}
	if err := l.saveJournal(); err != nil {
		l.log.Error("users: cannot write the journal; counts stay in memory", "journal", l.opts.Journal, "err", err)
		return
	}
	l.dirty = false
}

func (l *Ledger) saveJournal() error {
	path := l.opts.Journal
	if l.inflight == nil && len(l.pending) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	j := journal{Version: journalVersion}
	if b := l.inflight; b != nil {
		j.RawBatch = &journalBatch{ID: b.ID, Deltas: toRows(b.Deltas)}
	}
	pend := make([]Delta, 0, len(l.pending))
	for _, d := range l.pending {
		pend = append(pend, *d)
	}
	j.RawPend = toRows(pend)
	data, err := json.Marshal(&j)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, data)
}

// writeFileAtomic replaces path with data so that a crash leaves either the old or the new file.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
