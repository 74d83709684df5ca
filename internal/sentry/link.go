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
	i, n := 0, len(h)
	for i < n {
		// Skip to the next '<'.
		for i < n && h[i] != '<' {
			i++
		}
		if i >= n {
			break
		}
		end := strings.IndexByte(h[i+1:], '>')
		if end < 0 {
			break
		}
		l := Link{URL: strings.TrimSpace(h[i+1 : i+1+end]), Params: map[string]string{}}
		i = i + 1 + end + 1
		// Parameters: ; name[=value] until ',' or end.
		for {
			for i < n && (h[i] == ' ' || h[i] == '\t') {
				i++
			}
			if i >= n || h[i] != ';' {
				break
			}
			i++
			for i < n && (h[i] == ' ' || h[i] == '\t') {
				i++
			}
			ks := i
			for i < n && h[i] != '=' && h[i] != ';' && h[i] != ',' && h[i] != ' ' && h[i] != '\t' && h[i] != '<' {
				i++
			}
			name := strings.ToLower(h[ks:i])
			for i < n && (h[i] == ' ' || h[i] == '\t') {
				i++
			}
			var val string
			if i < n && h[i] == '=' {
				i++
				for i < n && (h[i] == ' ' || h[i] == '\t') {
					i++
				}
				if i < n && h[i] == '"' {
					i++
					var sb strings.Builder
					for i < n && h[i] != '"' {
						if h[i] == '\\' && i+1 < n {
							i++
						}
						sb.WriteByte(h[i])
						i++
					}
					if i < n {
						i++ // closing quote
					}
					val = sb.String()
				} else {
					vs := i
					for i < n && h[i] != ';' && h[i] != ',' && h[i] != ' ' && h[i] != '\t' && h[i] != '<' {
						i++
					}
					val = h[vs:i]
				}
			}
			if name != "" {
				if _, dup := l.Params[name]; !dup {
					l.Params[name] = val
				}
			}
		}
		l.Rel = l.Params["rel"]
		l.Results = strings.EqualFold(l.Params["results"], "true")
		l.Cursor = l.Params["cursor"]
		links = append(links, l)
		// Anything up to the separating comma is junk.
		for i < n && h[i] != ',' && h[i] != '<' {
			i++
		}
	}
	return links
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
