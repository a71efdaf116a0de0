package tlsconf

import (
	"crypto/tls"
	"slices"
	"strings"
)

// opensslCiphers maps OpenSSL's TLS ≤ 1.2 suite names to Go's. Names Go has no suite for (DHE-*, CAMELLIA,
// ARIA, PSK, ...) are absent and come back as unknown.
var opensslCiphers = map[string]uint16{
	"ECDHE-ECDSA-AES128-GCM-SHA256": tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-RSA-AES128-GCM-SHA256":   tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-ECDSA-AES256-GCM-SHA384": tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-RSA-AES256-GCM-SHA384":   tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-ECDSA-CHACHA20-POLY1305": tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-RSA-CHACHA20-POLY1305":   tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-ECDSA-AES128-SHA":        tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	"ECDHE-ECDSA-AES256-SHA":        tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	"ECDHE-RSA-AES128-SHA":          tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	"ECDHE-RSA-AES256-SHA":          tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	"ECDHE-ECDSA-AES128-SHA256":     tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
	"ECDHE-RSA-AES128-SHA256":       tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
	"ECDHE-RSA-DES-CBC3-SHA":        tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA,
	"ECDHE-ECDSA-RC4-SHA":           tls.TLS_ECDHE_ECDSA_WITH_RC4_128_SHA,
	"ECDHE-RSA-RC4-SHA":             tls.TLS_ECDHE_RSA_WITH_RC4_128_SHA,
	"AES128-GCM-SHA256":             tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
	"AES256-GCM-SHA384":             tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
	"AES128-SHA":                    tls.TLS_RSA_WITH_AES_128_CBC_SHA,
	"AES256-SHA":                    tls.TLS_RSA_WITH_AES_256_CBC_SHA,
	"AES128-SHA256":                 tls.TLS_RSA_WITH_AES_128_CBC_SHA256,
	"DES-CBC3-SHA":                  tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA,
	"RC4-SHA":                       tls.TLS_RSA_WITH_RC4_128_SHA,
}

// MapCiphers maps an OpenSSL cipher list ("ECDHE-ECDSA-AES128-GCM-SHA256:...", separated by ':', ','
// or spaces) to Go's TLS ≤ 1.2 suite IDs, in order and without duplicates. IANA names
// (TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256) are accepted too. Exclusions ("!aNULL", "-RC4") and the
// "@STRENGTH" directive are skipped; names Go lacks, and OpenSSL keywords such as HIGH, come back in
// unknown. TLS 1.3 suite names are unknown here: Go does not let them be configured.
func MapCiphers(openssl string) (ids []uint16, unknown []string) {
	iana := map[string]uint16{}
	for _, s := range tls.CipherSuites() {
		iana[s.Name] = s.ID
	}
	for _, s := range tls.InsecureCipherSuites() {
		iana[s.Name] = s.ID
	}
	for _, name := range splitList(openssl) {
		if name[0] == '!' || name[0] == '-' || name[0] == '@' {
			continue
		}
		name = strings.TrimPrefix(name, "+")
		id, ok := opensslCiphers[strings.ToUpper(name)]
		if !ok {
			id, ok = iana[strings.ToUpper(name)]
		}
		if ok && !slices.Contains(ids, id) && !isTLS13Suite(id) {
			ids = append(ids, id)
			continue
		}
		if !ok || isTLS13Suite(id) {
			unknown = append(unknown, name)
		}
	}
	return ids, unknown
}

func isTLS13Suite(id uint16) bool {
	return id == tls.TLS_AES_128_GCM_SHA256 || id == tls.TLS_AES_256_GCM_SHA384 || id == tls.TLS_CHACHA20_POLY1305_SHA256
}

// opensslCurves maps OpenSSL group names (lower case) to Go's.
var opensslCurves = map[string]tls.CurveID{
	"x25519":             tls.X25519,
	"p-256":              tls.CurveP256,
	"prime256v1":         tls.CurveP256,
	"secp256r1":          tls.CurveP256,
	"p-384":              tls.CurveP384,
	"secp384r1":          tls.CurveP384,
	"p-521":              tls.CurveP521,
	"secp521r1":          tls.CurveP521,
	"x25519mlkem768":     tls.X25519MLKEM768,
	"secp256r1mlkem768":  tls.SecP256r1MLKEM768,
	"secp384r1mlkem1024": tls.SecP384r1MLKEM1024,
}

// MapCurves maps an OpenSSL groups list ("X25519:P-256:prime256v1:secp384r1:X25519MLKEM768") to Go's
// curve IDs, in order and without duplicates; names Go lacks (X448, ffdhe2048, brainpool...) come back in
// unknown.
func MapCurves(openssl string) (ids []tls.CurveID, unknown []string) {
	for _, name := range splitList(openssl) {
		id, ok := opensslCurves[strings.ToLower(name)]
		if !ok {
			unknown = append(unknown, name)
			continue
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids, unknown
}

func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ':' || r == ',' || r == ' ' || r == '\t' })
}
