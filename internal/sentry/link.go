package sentry

import (
	"net/url"
	"strings"
)

// Link is one entry of Sentry's Link header:
//
//	<https://sentry.io/api/0/organizations/acme/members/?&cursor=100:1:0>; rel="next"; results="true"; cursor="100:1:0"
type Link struct {
	URL     string
	Rel     string
	Results bool
	Cursor  string
	// Params holds every parameter (lower-case names, unquoted values).
	Params map[string]string
}

// ParseLink parses an RFC 8288 Link header value as Sentry sends it. It is
// lenient: malformed entries are skipped, never a panic.
func ParseLink(h string) []Link {
	var links []Link
	sc := linkScanner{h: h}
	for {
		// Skip to the next '<'.
		sc.until("<")
		if sc.done() {
			break
		}
		end := strings.IndexByte(h[sc.i+1:], '>')
		if end < 0 {
			break
		}
		l := Link{URL: strings.TrimSpace(h[sc.i+1 : sc.i+1+end]), Params: map[string]string{}}
		sc.i += 1 + end + 1
		// Parameters: ; name[=value] until ',' or end.
		for {
			name, val, ok := sc.param()
			if !ok {
				break
			}
			if _, dup := l.Params[name]; name != "" && !dup {
				l.Params[name] = val
			}
		}
		l.Rel = l.Params["rel"]
		l.Results = strings.EqualFold(l.Params["results"], "true")
		l.Cursor = l.Params["cursor"]
		links = append(links, l)
		// Anything up to the separating comma is junk.
		sc.until(",<")
	}
	return links
}

// linkScanner walks a Link header value byte by byte.
type linkScanner struct {
	h string
	i int
}

func (sc *linkScanner) done() bool { return sc.i >= len(sc.h) }

func (sc *linkScanner) at(c byte) bool { return sc.i < len(sc.h) && sc.h[sc.i] == c }

// until advances to the next byte in stop (or the end) and returns what it passed.
func (sc *linkScanner) until(stop string) string {
	start := sc.i
	for sc.i < len(sc.h) && strings.IndexByte(stop, sc.h[sc.i]) < 0 {
		sc.i++
	}
	return sc.h[start:sc.i]
}

func (sc *linkScanner) skipSpace() {
	for sc.at(' ') || sc.at('\t') {
		sc.i++
	}
}

// param reads "; name[=value]"; ok is false when no ';' comes next.
func (sc *linkScanner) param() (name, val string, ok bool) {
	sc.skipSpace()
	if !sc.at(';') {
		return "", "", false
	}
	sc.i++
	sc.skipSpace()
	name = strings.ToLower(sc.until("=;, \t<"))
	sc.skipSpace()
	if !sc.at('=') {
		return name, "", true
	}
	sc.i++
	sc.skipSpace()
	if sc.at('"') {
		return name, sc.quoted(), true
	}
	return name, sc.until(";, \t<"), true
}

// quoted reads a quoted string from its opening quote, unescaping \x; an
// unterminated one runs to the end.
func (sc *linkScanner) quoted() string {
	sc.i++
	var sb strings.Builder
	for sc.i < len(sc.h) && sc.h[sc.i] != '"' {
		if sc.h[sc.i] == '\\' && sc.i+1 < len(sc.h) {
			sc.i++
		}
		sb.WriteByte(sc.h[sc.i])
		sc.i++
	}
	if sc.i < len(sc.h) {
		sc.i++ // closing quote
	}
	return sb.String()
}

// nextCursor returns the cursor of the rel="next" link when it has results.
func nextCursor(h string) (string, bool) {
	for _, l := range ParseLink(h) {
		if strings.EqualFold(l.Rel, "next") {
			if !l.Results {
				return "", false
			}
			if l.Cursor != "" {
				return l.Cursor, true
			}
			if u, err := url.Parse(l.URL); err == nil {
				if c := u.Query().Get("cursor"); c != "" {
					return c, true
				}
			}
			return "", false
		}
	}
	return "", false
}
