package sentry

import (
	"strings"
	"testing"
)

func TestParseLink(t *testing.T) {
	h := `<https://sentry.io/api/0/organizations/acme/members/?&cursor=100:-1:1>; rel="previous"; results="false"; cursor="100:-1:1", ` +
		`<https://sentry.io/api/0/organizations/acme/members/?&cursor=100:1:0>; rel="next"; results="true"; cursor="100:1:0"`
	ls := ParseLink(h)
	if len(ls) != 2 {
		t.Fatalf("got %d links, want 2: %+v", len(ls), ls)
	}
	if ls[0].Rel != "previous" || ls[0].Results || ls[0].Cursor != "100:-1:1" {
		t.Errorf("previous = %+v", ls[0])
	}
	if ls[1].Rel != "next" || !ls[1].Results || ls[1].Cursor != "100:1:0" ||
		ls[1].URL != "https://sentry.io/api/0/organizations/acme/members/?&cursor=100:1:0" {
		t.Errorf("next = %+v", ls[1])
	}
	if c, ok := nextCursor(h); !ok || c != "100:1:0" {
		t.Errorf("nextCursor = %q, %v", c, ok)
	}
}

func TestNextCursor(t *testing.T) {
	for _, tc := range []struct {
		name, h, want string
		ok            bool
	}{
		{"Empty", "", "", false},
		{"NoMore", `<u?cursor=a>; rel="previous"; results="true"; cursor="a", <u?cursor=b>; rel="next"; results="false"; cursor="b"`, "", false},
		{"CommaInURL", `<https://x/?query=email:a,b&cursor=1:0:0>; rel="next"; results="true"; cursor="1:100:0"`, "1:100:0", true},
		{"CursorFromURL", `<https://x/?query=a&cursor=9:9:0>; rel="next"; results="true"`, "9:9:0", true},
		{"Unquoted", `<u>; rel=next; results=true; cursor=0:100:0`, "0:100:0", true},
		{"CaseAndSpaces", `<u> ;REL="Next" ; Results="TRUE" ; Cursor="c1"`, "c1", true},
		{"Garbage", `garbage, <<>>; ;;; rel="next"`, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := nextCursor(tc.h)
			if got != tc.want || ok != tc.ok {
				t.Errorf("nextCursor(%q) = %q, %v; want %q, %v", tc.h, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// FuzzParseLink checks that ParseLink never panics and that it recovers links
// rendered the way Sentry renders them (the oracle).
func FuzzParseLink(f *testing.F) {
	f.Add("https://sentry.io/api/0/organizations/acme/members/?&", "100:1:0", true, "0:0:1")
	f.Add("http://x/?q=a,b;c", "1:2:3", false, "")
	f.Add("", "", true, "x")
	f.Fuzz(func(t *testing.T, u, cursor string, results bool, prev string) {
		// Arbitrary input must not panic.
		_ = ParseLink(u + cursor + prev)
		if strings.ContainsAny(u, "<>") || strings.ContainsAny(cursor+prev, `"\<>`) {
			return
		}
		rs := "false"
		if results {
			rs = "true"
		}
		h := `<` + u + `cursor=` + prev + `>; rel="previous"; results="false"; cursor="` + prev + `", ` +
			`<` + u + `cursor=` + cursor + `>; rel="next"; results="` + rs + `"; cursor="` + cursor + `"`
		ls := ParseLink(h)
		if len(ls) != 2 {
			t.Fatalf("ParseLink(%q): %d links", h, len(ls))
		}
		if ls[1].Rel != "next" || ls[1].Cursor != cursor || ls[1].Results != results ||
			ls[1].URL != strings.TrimSpace(u+"cursor="+cursor) {
			t.Fatalf("ParseLink(%q)[1] = %+v", h, ls[1])
		}
		if ls[0].Rel != "previous" || ls[0].Cursor != prev || ls[0].Results {
			t.Fatalf("ParseLink(%q)[0] = %+v", h, ls[0])
		}
		got, ok := nextCursor(h)
		if want := results && cursor != ""; ok != want || (ok && got != cursor) {
			t.Fatalf("nextCursor(%q) = %q, %v", h, got, ok)
		}
	})
}
