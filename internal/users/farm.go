package users

// Quotas across a farm. Several servers share one users table; each counts its own connections and
// writes its counts every Flush. A user who crosses its quota on one server is cut there at once
// (enforce), but another server only sees the usage that reached the table: with nothing more, it
// would keep admitting that user until the first server's next flush, then its own next refresh.
// So the server that sees a user cross the quota writes its counts at once: every other server then
// refuses that user at its next refresh (Refresh, default 2 s), without any query on the
// authentication path. A deleted user needs nothing of the kind: the row is gone for every server at
// its next refresh.

// quotaCrossed asks the database goroutine for an immediate flush. It never blocks: one pending request
// covers every crossing until it runs. Caller holds mu.
func (l *Ledger) quotaCrossed() {
	select {
	case l.flushNow <- struct{}{}:
	default:
	}
}

// flushAll writes every count collected so far (a batch in flight first), stopping at the first error;
// the periodic flush retries.
func (l *Ledger) flushAll() {
	for {
		if err := l.flushOnce(); err != errMore {
			return
		}
	}
}
