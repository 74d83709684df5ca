package sentry

import (
	"context"
	"fmt"
	"iter"
	"net/url"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
)

// paginate streams a Link-paginated list endpoint whose body is a JSON array.
// Cursors are opaque; it stops when the next link says results="false". Each page
// is one span named sentry.<name>.
func paginate[T any](ctx context.Context, c *Client, name string, cl call) iter.Seq2[T, error] {
	return paginateWith(ctx, c, name, cl, func(b []byte) ([]T, error) {
		var items []T
		err := unmarshal(b, &items)
		return items, err
	})
}

func paginateWith[T any](ctx context.Context, c *Client, name string, cl call, decode func([]byte) ([]T, error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		q := url.Values{}
		for k, v := range cl.query {
			q[k] = append([]string(nil), v...)
		}
		if q.Get("per_page") == "" {
			q.Set("per_page", strconv.Itoa(restDefaultPerPage))
		}
		seen := map[string]bool{}
		for page := 1; ; page++ {
			pc := cl
			pc.query = q
			items, next, err := fetchPage(ctx, c, name, page, pc, decode)
			if err != nil {
				yield(zero, fmt.Errorf("%s page %d: %w", name, page, err))
				return
			}
			for _, it := range items {
				if !yield(it, nil) {
					return
				}
			}
			if next == "" || len(items) == 0 {
				return
			}
			if seen[next] { // a server repeating a cursor would loop forever
				yield(zero, fmt.Errorf("%s page %d: cursor %q repeated", name, page, next))
				return
			}
			seen[next] = true
			q = url.Values{}
			for k, v := range pc.query {
				q[k] = v
			}
			q.Set("cursor", next)
		}
	}
}

func fetchPage[T any](ctx context.Context, c *Client, name string, page int, cl call, decode func([]byte) ([]T, error)) (items []T, next string, err error) {
	ctx, span := c.start(ctx, name, attribute.Int("sentry.page", page))
	defer func() { end(span, err) }()
	resp, err := c.do(ctx, cl)
	if err != nil {
		return nil, "", err
	}
	items, err = decode(resp.body)
	if err != nil {
		return nil, "", fmt.Errorf("sentry: decode %s: %w", cl.pattern, err)
	}
	next, _ = nextCursor(resp.header.Get("Link"))
	span.SetAttributes(attribute.Int("sentry.items", len(items)), attribute.Bool("sentry.more", next != ""))
	return items, next, nil
}

// paginateSCIM streams a SCIM list endpoint by startIndex/count offsets.
func paginateSCIM[T any](ctx context.Context, c *Client, name string, cl call, count int) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		if count <= 0 || count > scimDefaultCount {
			count = scimDefaultCount
		}
		start := 1
		for page := 1; ; page++ {
			q := url.Values{}
			for k, v := range cl.query {
				q[k] = v
			}
			q.Set("startIndex", strconv.Itoa(start))
			q.Set("count", strconv.Itoa(count))
			pc := cl
			pc.query = q
			lst, err := fetchSCIMPage[T](ctx, c, name, page, pc)
			if err != nil {
				yield(zero, fmt.Errorf("%s startIndex %d: %w", name, start, err))
				return
			}
			for _, it := range lst.Resources {
				if !yield(it, nil) {
					return
				}
			}
			n := len(lst.Resources)
			if n == 0 || start-1+n >= lst.TotalResults {
				return
			}
			start += n
		}
	}
}

func fetchSCIMPage[T any](ctx context.Context, c *Client, name string, page int, cl call) (lst *scimList[T], err error) {
	ctx, span := c.start(ctx, name, attribute.Int("sentry.page", page))
	defer func() { end(span, err) }()
	resp, err := c.do(ctx, cl)
	if err != nil {
		return nil, err
	}
	lst = new(scimList[T])
	if err := resp.decode(lst); err != nil {
		return nil, err
	}
	span.SetAttributes(attribute.Int("sentry.items", len(lst.Resources)), attribute.Int("sentry.total", lst.TotalResults))
	return lst, nil
}
