package config

import "time"

// Defaults of the "fastrojan.users" object.
const (
	DefaultUsersRefresh = 2 * time.Second
	DefaultUsersFlush   = 10 * time.Second
)

// Users is the "fastrojan.users" object: where users, quotas and byte counts live beyond the
// config's password list. mysql.enabled selects trojan-gfw's MySQL table; otherwise SQLite, if set,
// holds the same table in a local file. Without either, only the passwords of the config work and
// nothing is counted.
type Users struct {
	SQLite  string   `json:"sqlite"`  // path of an SQLite database with trojan-gfw's users table
	Refresh Duration `json:"refresh"` // how often the users table is re-read (new, deleted, over-quota users)
	Flush   Duration `json:"flush"`   // how often byte counts are written to the database
	// Journal is a local file keeping counts not yet in the database across outages, restarts and
	// crashes. One per server process. Empty: counts wait in memory only.
	Journal string `json:"journal"`
	// PerUserMetrics exports bytes and connections per user (one label value per user: opt-in).
	PerUserMetrics bool `json:"per_user_metrics"`
}

// DefaultUsers returns the defaults of the "fastrojan.users" object.
func DefaultUsers() Users {
	return Users{Refresh: Duration(DefaultUsersRefresh), Flush: Duration(DefaultUsersFlush)}
}

// UserDatabase reports whether users come from a database (MySQL or SQLite) besides the config.
func (c *Config) UserDatabase() bool { return c.MySQL.Enabled || c.Fastrojan.Users.SQLite != "" }

func (v *validator) users(c *Config) {
	u := &c.Fastrojan.Users
	if u.Refresh <= 0 {
		v.add("$.fastrojan.users.refresh", "must be a positive duration such as \"2s\"; leave it out for the default")
	} else if u.Refresh > Duration(time.Minute) {
		v.add("$.fastrojan.users.refresh", "%s is too long: deleted and over-quota users keep working that long; use at most 1m", u.Refresh)
	}
	if u.Flush <= 0 {
		v.add("$.fastrojan.users.flush", "must be a positive duration such as \"10s\"; leave it out for the default")
	}
	if c.MySQL.Enabled && u.SQLite != "" {
		v.add("$.fastrojan.users.sqlite", "mysql.enabled is set too: use one user database, not both")
	}
}
