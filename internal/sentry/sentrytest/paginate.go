package sentrytest

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// page is an offset page request decoded from per_page and cursor.
type page struct {
	limit  int
	offset int
	pageNo int // OffsetPaginator page number (cursor offset)
	value  int // the cursor's value (0 = none)
}

// parsePerPage validates per_page as Sentry's base endpoint does.
func (c *call) parsePerPage() (int, bool) {
	pp := c.r.URL.Query().Get("per_page")
	if pp == "" {
		return 100, true
	}
	n, err := strconv.Atoi(pp)
	if err != nil || n < 1 {
		c.detail(http.StatusBadRequest, "Invalid per_page parameter.")
		return 0, false
	}
	if n > 100 {
		c.detail(http.StatusBadRequest, "Invalid per_page value. Cannot exceed 100.")
		return 0, false
	}
	return n, true
}

type cursor struct {
	value  int64
	offset int
	isPrev bool
}

func parseCursor(s string) (cursor, bool) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return cursor{}, false
	}
	v, err1 := strconv.ParseInt(parts[0], 10, 64)
	o, err2 := strconv.Atoi(parts[1])
	p, err3 := strconv.Atoi(parts[2])
	if err1 != nil || err2 != nil || err3 != nil || (p != 0 && p != 1) {
		return cursor{}, false
	}
	return cursor{value: v, offset: o, isPrev: p == 1}, true
}

func (cu cursor) String() string {
	p := "0"
	if cu.isPrev {
		p = "1"
	}
	return strconv.FormatInt(cu.value, 10) + ":" + strconv.Itoa(cu.offset) + ":" + p
}

// offsetPage decodes an OffsetPaginator request (src/sentry/api/paginator.py):
// the cursor is "value:offset:is_prev"; the rows start at offset*value (so
// "0:N:0" is the first page and, with value = per_page, offset counts pages),
// value+1 rows are read (per_page+1 when value is 0) and, when value differs
// from per_page, only the last per_page+1 of them are kept.
func (c *call) offsetPage() (page, bool) {
	limit, ok := c.parsePerPage()
	if !ok {
		return page{}, false
	}
	cs := c.r.URL.Query().Get("cursor")
	if cs == "" {
		return page{limit: limit}, true
	}
	cu, ok := parseCursor(cs)
	if !ok {
		c.detail(http.StatusBadRequest, "Invalid cursor parameter.")
		return page{}, false
	}
	offset := int64(cu.offset) * cu.value
	if offset < 0 {
		c.detail(http.StatusBadRequest, "Pagination offset cannot be negative")
		return page{}, false
	}
	return page{limit: limit, offset: int(offset), pageNo: cu.offset, value: int(cu.value)}, true
}

// linkBase is the absolute URL of the request with the query minus cursor,
// as Sentry's build_cursor_link writes it (ending in "?" or "?q" before "&cursor=").
func (c *call) linkBase() string {
	r := c.r
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p != "" {
		scheme = p
	}
	q := r.URL.Query()
	q.Del("cursor")
	return scheme + "://" + r.Host + (&url.URL{Path: r.URL.Path}).EscapedPath() + "?" + q.Encode()
}

func linkEntry(base, rel string, cu cursor, results bool) string {
	res := "false"
	if results {
		res = "true"
	}
	s := cu.String()
	return "<" + base + "&cursor=" + s + ">; rel=\"" + rel + "\"; results=\"" + res + "\"; cursor=\"" + s + "\""
}

// setOffsetLink writes the Link header of an OffsetPaginator page.
func (c *call) setOffsetLink(pg page, hasMore bool) {
	base := c.linkBase()
	prev := cursor{value: int64(pg.limit), offset: pg.pageNo - 1, isPrev: true}
	next := cursor{value: int64(pg.limit), offset: pg.pageNo + 1}
	c.w.Header().Set("Link", linkEntry(base, "previous", prev, pg.pageNo > 0)+", "+linkEntry(base, "next", next, hasMore))
}

// window returns the [lo, hi) slice bounds of pg over n items and whether more follow.
func (pg page) window(n int) (int, int, bool) {
	lo := pg.offset
	if lo > n {
		lo = n
	}
	span := pg.limit
	if pg.value > 0 {
		span = pg.value
	}
	stop := lo + span + 1
	if stop > n {
		stop = n
	}
	if pg.value > 0 && pg.value != pg.limit && stop-lo > pg.limit+1 {
		lo = stop - (pg.limit + 1)
	}
	hi := lo + pg.limit
	if hi > stop {
		hi = stop
	}
	return lo, hi, stop-lo > pg.limit
}
