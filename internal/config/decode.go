package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The strict decoder walks the JSON document alongside the Go structs, using their json tags as the list
// of known keys. It reports the first problem with the file name, the JSON path and what was expected.
// encoding/json alone cannot do this: DisallowUnknownFields gives no path, and type errors name Go types.

var durationType = reflect.TypeFor[Duration]()

// aliases maps a struct type to accepted alternative keys and the key they stand for.
var aliases = map[reflect.Type]map[string]string{
	reflect.TypeFor[MySQL](): {"cafile": "ca"}, // trojan-gfw after 1.16 renamed mysql.ca to mysql.cafile
}

type decoder struct{ file string }

func decodeInto(data []byte, name string, c *Config) error {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // a UTF-8 BOM, as some Windows editors write
	var syntax any
	if err := json.Unmarshal(data, &syntax); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line, col := lineCol(data, se.Offset)
			return &Error{File: name, Line: line, Column: col, Msg: "invalid JSON: " + se.Error(), Err: err}
		}
		return &Error{File: name, Msg: "invalid JSON: " + err.Error(), Err: err}
	}
	d := decoder{file: name}
	return d.value(json.RawMessage(data), "$", reflect.ValueOf(c).Elem())
}

// lineCol turns a byte offset (the position just after the offending byte, as json.SyntaxError reports)
// into a 1-based line and column.
func lineCol(data []byte, offset int64) (line, col int) {
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	if offset > 0 {
		offset-- // point at the offending byte itself
	}
	prefix := data[:offset]
	line = 1 + bytes.Count(prefix, []byte("\n"))
	lastNL := bytes.LastIndexByte(prefix, '\n')
	col = utf8.RuneCount(prefix[lastNL+1:]) + 1
	return line, col
}

func (d *decoder) errf(path, format string, args ...any) error {
	return &Error{File: d.file, Path: path, Msg: fmt.Sprintf(format, args...)}
}

func (d *decoder) typeErr(path, expected string, raw json.RawMessage) error {
	return d.errf(path, "expected %s, got %s", expected, describe(raw))
}

// describe names a JSON value for an error message, quoting short strings and numbers.
func describe(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "a string"
		}
		if utf8.RuneCountInString(s) > 40 {
			s = string([]rune(s)[:40]) + "…"
		}
		return "string " + strconv.Quote(s)
	case 't', 'f':
		return "boolean " + string(raw)
	case 'n':
		return "null"
	case '[':
		return "an array"
	case '{':
		return "an object"
	default:
		if len(raw) > 40 {
			return "number " + string(raw[:40]) + "…"
		}
		return "number " + string(raw)
	}
}

func (d *decoder) value(raw json.RawMessage, path string, v reflect.Value) error {
	raw = bytes.TrimSpace(raw)
	if v.Type() == durationType {
		dur, err := parseDuration(raw)
		if err != nil {
			return d.errf(path, "%v", err)
		}
		v.SetInt(int64(dur))
		return nil
	}
	switch v.Kind() {
	case reflect.Pointer: // an optional setting: null or absent leaves it nil (its default)
		if string(raw) == "null" {
			v.SetZero()
			return nil
		}
		p := reflect.New(v.Type().Elem())
		if err := d.value(raw, path, p.Elem()); err != nil {
			return err
		}
		v.Set(p)
		return nil
	case reflect.Struct:
		return d.object(raw, path, v)
	case reflect.Bool:
		switch string(raw) {
		case "true":
			v.SetBool(true)
		case "false":
			v.SetBool(false)
		default:
			return d.typeErr(path, "a boolean (true or false)", raw)
		}
		return nil
	case reflect.String:
		if len(raw) == 0 || raw[0] != '"' {
			return d.typeErr(path, "a string", raw)
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return d.errf(path, "bad string: %v", err)
		}
		v.SetString(s)
		return nil
	case reflect.Int:
		n, err := parseInt(raw)
		if errors.Is(err, errRange) {
			return d.errf(path, "number %s is out of range", raw)
		}
		if err != nil {
			return d.typeErr(path, "an integer", raw)
		}
		v.SetInt(n)
		return nil
	case reflect.Slice: // []string; null means empty, as in trojan-gfw
		if string(raw) == "null" {
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
			return nil
		}
		if len(raw) == 0 || raw[0] != '[' {
			return d.typeErr(path, "an array of strings", raw)
		}
		var elems []json.RawMessage
		if err := json.Unmarshal(raw, &elems); err != nil {
			return d.errf(path, "bad array: %v", err)
		}
		s := reflect.MakeSlice(v.Type(), len(elems), len(elems))
		for i, e := range elems {
			if err := d.value(e, fmt.Sprintf("%s[%d]", path, i), s.Index(i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case reflect.Map: // map[string]int; null means empty
		if string(raw) == "null" {
			v.Set(reflect.MakeMap(v.Type()))
			return nil
		}
		entries, err := d.entries(raw, path)
		if err != nil {
			return err
		}
		m := reflect.MakeMapWithSize(v.Type(), len(entries))
		for _, e := range entries {
			ev := reflect.New(v.Type().Elem()).Elem()
			if err := d.value(e.raw, keyPath(path, e.key), ev); err != nil {
				return err
			}
			m.SetMapIndex(reflect.ValueOf(e.key), ev)
		}
		v.Set(m)
		return nil
	}
	return d.errf(path, "internal error: no decoder for %s", v.Type())
}

type entry struct {
	key string
	raw json.RawMessage
}

// entries lists an object's members in order and rejects duplicate keys, which encoding/json would
// silently resolve to the last one (and trojan-gfw to the first).
func (d *decoder) entries(raw json.RawMessage, path string) ([]entry, error) {
	if len(raw) == 0 || raw[0] != '{' {
		return nil, d.typeErr(path, "an object", raw)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		return nil, d.errf(path, "bad object: %v", err)
	}
	var out []entry
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, d.errf(path, "bad object: %v", err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, d.errf(path, "bad object key %v", tok)
		}
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return nil, d.errf(keyPath(path, key), "bad value: %v", err)
		}
		if seen[key] {
			return nil, d.errf(keyPath(path, key), "duplicate key; give each key once")
		}
		seen[key] = true
		out = append(out, entry{key, val})
	}
	return out, nil
}

func (d *decoder) object(raw json.RawMessage, path string, v reflect.Value) error {
	entries, err := d.entries(raw, path)
	if err != nil {
		return err
	}
	t := v.Type()
	known := make([]string, 0, t.NumField())
	index := map[string]int{}
	for i := range t.NumField() {
		tag := jsonName(t.Field(i))
		if tag == "" {
			continue
		}
		known = append(known, tag)
		index[tag] = i
	}
	alias := aliases[t]
	set := map[string]string{} // canonical key -> key as written
	for _, e := range entries {
		canon := e.key
		if a, ok := alias[e.key]; ok {
			canon = a
		}
		i, ok := index[canon]
		if !ok {
			return d.errf(keyPath(path, e.key), "unknown key%s (known keys: %s)",
				suggest(e.key, known, path), strings.Join(known, ", "))
		}
		if prev, dup := set[canon]; dup {
			return d.errf(keyPath(path, e.key), "same setting as %q; give only one of them", prev)
		}
		set[canon] = e.key
		if err := d.value(e.raw, keyPath(path, e.key), v.Field(i)); err != nil {
			return err
		}
	}
	return nil
}

func jsonName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if tag == "-" {
		return ""
	}
	return tag
}

// suggest returns a " (did you mean ...?)" hint for a mistyped key, or a key that belongs elsewhere.
func suggest(key string, known []string, path string) string {
	if path == "$" {
		if name := extKey(key); name != "" {
			return fmt.Sprintf(`; fastrojan settings go inside the "fastrojan" object: did you mean fastrojan.%s?`, name)
		}
	}
	best, bestDist := "", 3
	for _, k := range known {
		if dist := editDistance(strings.ToLower(key), k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

func extKey(key string) string {
	t := reflect.TypeFor[Ext]()
	for i := range t.NumField() {
		if n := jsonName(t.Field(i)); n == key {
			return n
		}
	}
	return ""
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// keyPath appends an object key to a JSON path: $.ssl.cert, or $.ssl.alpn_port_override["h2 c"] for
// keys that are not plain identifiers.
func keyPath(path, key string) string {
	plain := key != ""
	for _, r := range key {
		if !(r == '_' || r == '-' || r == '/' || r == '.' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9')) {
			plain = false
			break
		}
	}
	if plain && !strings.Contains(key, ".") {
		return path + "." + key
	}
	return path + "[" + strconv.Quote(key) + "]"
}

var errRange = errors.New("out of range")

// parseInt accepts a JSON number that is an integer (1e3 included) and fits in an int.
func parseInt(raw json.RawMessage) (int64, error) {
	s := string(raw)
	if len(s) == 0 || !(s[0] == '-' || ('0' <= s[0] && s[0] <= '9')) {
		return 0, errors.New("not a number")
	}
	if n, err := strconv.ParseInt(s, 10, 0); err == nil {
		return n, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) {
		return 0, errors.New("not an integer")
	}
	if f > math.MaxInt32 || f < math.MinInt32 {
		return 0, errRange
	}
	return int64(f), nil
}

// Duration is a time.Duration written in JSON as a string ("150ms", "10s", "5m") or a number of
// seconds (2, 0.5). Negative values are rejected.
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes the duration as a string such as "1m30s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON accepts what the strict decoder accepts, so a Duration also works with encoding/json.
func (d *Duration) UnmarshalJSON(b []byte) error {
	v, err := parseDuration(bytes.TrimSpace(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

const durationExpected = `a duration (a string such as "10s" or "150ms", or a number of seconds)`

func parseDuration(raw []byte) (time.Duration, error) {
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, fmt.Errorf("expected %s, got %s", durationExpected, describe(raw))
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("expected %s, got %s", durationExpected, describe(raw))
		}
		if v < 0 {
			return 0, fmt.Errorf("negative duration %s", s)
		}
		return v, nil
	}
	if len(raw) > 0 && (raw[0] == '-' || ('0' <= raw[0] && raw[0] <= '9')) {
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			return 0, fmt.Errorf("expected %s, got %s", durationExpected, describe(raw))
		}
		if f < 0 {
			return 0, fmt.Errorf("negative duration %s", raw)
		}
		if f*float64(time.Second) > math.MaxInt64 {
			return 0, fmt.Errorf("duration %s seconds is too long", raw)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	return 0, fmt.Errorf("expected %s, got %s", durationExpected, describe(raw))
}
