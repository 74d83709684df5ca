package scimserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// filterExpr is a parsed SCIM filter (RFC 7644 §3.4.2.2), the subset Okta and
// Entra send: eq (and ne, co, sw, ew, pr) joined by and/or, not, parentheses and
// value paths such as members[value eq "…"].
type filterExpr struct {
	op    string // "and", "or", "not", "cmp", "pr", "path"
	left  *filterExpr
	right *filterExpr
	attr  string // cmp, pr, path: attribute path (schema-qualified names allowed)
	cmpOp string // eq, ne, co, sw, ew
	value any    // string, bool, json.Number or nil
}

const maxFilterDepth = 32

// parseFilter parses a filter expression.
func parseFilter(s string) (*filterExpr, error) {
	if len(s) > 2048 {
		return nil, errors.New("filter longer than 2048 characters")
	}
	toks, err := lexFilter(s)
	if err != nil {
		return nil, err
	}
	p := &filterParser{toks: toks}
	e, err := p.or(0)
	if err != nil {
		return nil, err
	}
	if p.pos != len(p.toks) {
		return nil, fmt.Errorf("unexpected %q in filter", truncate(p.toks[p.pos].text))
	}
	return e, nil
}

type filterTok struct {
	text string
	str  bool // a quoted string literal (text holds the decoded value)
}

func lexFilter(s string) ([]filterTok, error) {
	var toks []filterTok
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(' || c == ')' || c == '[' || c == ']':
			toks = append(toks, filterTok{text: string(c)})
			i++
		case c == '"':
			j := i + 1
			for j < len(s) && s[j] != '"' {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(s) {
				return nil, errors.New("unterminated string in filter")
			}
			var v string
			if err := json.Unmarshal([]byte(s[i:j+1]), &v); err != nil {
				return nil, errors.New("malformed string in filter")
			}
			toks = append(toks, filterTok{text: v, str: true})
			i = j + 1
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\n\r()[]\"", rune(s[j])) {
				j++
			}
			toks = append(toks, filterTok{text: s[i:j]})
			i = j
		}
		if len(toks) > 256 {
			return nil, errors.New("filter has too many terms")
		}
	}
	return toks, nil
}

type filterParser struct {
	toks []filterTok
	pos  int
}

func (p *filterParser) peekWord(w string) bool {
	return p.pos < len(p.toks) && !p.toks[p.pos].str && strings.EqualFold(p.toks[p.pos].text, w)
}

func (p *filterParser) or(depth int) (*filterExpr, error) {
	if depth > maxFilterDepth {
		return nil, errors.New("filter nested too deeply")
	}
	l, err := p.and(depth)
	if err != nil {
		return nil, err
	}
	for p.peekWord("or") {
		p.pos++
		r, err := p.and(depth)
		if err != nil {
			return nil, err
		}
		l = &filterExpr{op: "or", left: l, right: r}
	}
	return l, nil
}

func (p *filterParser) and(depth int) (*filterExpr, error) {
	l, err := p.unary(depth)
	if err != nil {
		return nil, err
	}
	for p.peekWord("and") {
		p.pos++
		r, err := p.unary(depth)
		if err != nil {
			return nil, err
		}
		l = &filterExpr{op: "and", left: l, right: r}
	}
	return l, nil
}

func (p *filterParser) unary(depth int) (*filterExpr, error) {
	if p.pos >= len(p.toks) {
		return nil, errors.New("filter ends early")
	}
	if p.peekWord("not") {
		p.pos++
		if p.pos >= len(p.toks) || p.toks[p.pos].text != "(" || p.toks[p.pos].str {
			return nil, errors.New("not must be followed by (")
		}
		e, err := p.unary(depth + 1)
		if err != nil {
			return nil, err
		}
		return &filterExpr{op: "not", left: e}, nil
	}
	t := p.toks[p.pos]
	if !t.str && t.text == "(" {
		p.pos++
		e, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		if p.pos >= len(p.toks) || p.toks[p.pos].text != ")" || p.toks[p.pos].str {
			return nil, errors.New("missing ) in filter")
		}
		p.pos++
		return e, nil
	}
	if t.str || t.text == ")" || t.text == "[" || t.text == "]" {
		return nil, fmt.Errorf("expected an attribute, got %q", truncate(t.text))
	}
	attr := t.text
	p.pos++
	if p.pos < len(p.toks) && !p.toks[p.pos].str && p.toks[p.pos].text == "[" {
		p.pos++
		inner, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		if p.pos >= len(p.toks) || p.toks[p.pos].text != "]" || p.toks[p.pos].str {
			return nil, errors.New("missing ] in filter")
		}
		p.pos++
		return &filterExpr{op: "path", attr: attr, left: inner}, nil
	}
	if p.pos >= len(p.toks) || p.toks[p.pos].str {
		return nil, fmt.Errorf("expected an operator after %q", truncate(attr))
	}
	op := strings.ToLower(p.toks[p.pos].text)
	p.pos++
	if op == "pr" {
		return &filterExpr{op: "pr", attr: attr}, nil
	}
	switch op {
	case "eq", "ne", "co", "sw", "ew":
	case "gt", "ge", "lt", "le":
		return nil, fmt.Errorf("operator %s is not supported", op)
	default:
		return nil, fmt.Errorf("unknown operator %q", truncate(op))
	}
	if p.pos >= len(p.toks) {
		return nil, fmt.Errorf("missing value after %s", op)
	}
	vt := p.toks[p.pos]
	p.pos++
	var v any
	switch {
	case vt.str:
		v = vt.text
	case strings.EqualFold(vt.text, "true"):
		v = true
	case strings.EqualFold(vt.text, "false"):
		v = false
	case strings.EqualFold(vt.text, "null"):
		v = nil
	default:
		if _, err := strconv.ParseFloat(vt.text, 64); err != nil {
			return nil, fmt.Errorf("value %q must be quoted", truncate(vt.text))
		}
		v = json.Number(vt.text)
	}
	return &filterExpr{op: "cmp", attr: attr, cmpOp: op, value: v}, nil
}

// match reports whether the value v (a resource or an element of a
// multi-valued attribute) satisfies the filter.
func (f *filterExpr) match(v any) bool {
	switch f.op {
	case "and":
		return f.left.match(v) && f.right.match(v)
	case "or":
		return f.left.match(v) || f.right.match(v)
	case "not":
		return !f.left.match(v)
	case "path":
		for _, el := range lookupValues(v, f.attr) {
			if f.left.match(el) {
				return true
			}
		}
		return false
	case "pr":
		for _, x := range lookupValues(v, f.attr) {
			if x != nil && x != "" {
				return true
			}
		}
		return false
	case "cmp":
		vals := lookupValues(v, f.attr)
		if f.cmpOp == "ne" {
			for _, x := range vals {
				if compare("eq", x, f.value) {
					return false
				}
			}
			return true
		}
		for _, x := range vals {
			if compare(f.cmpOp, x, f.value) {
				return true
			}
		}
		return false
	}
	return false
}

// seed returns the element an eq filter describes (type eq "work" → {"type":"work"}).
func (f *filterExpr) seed() map[string]any {
	out := map[string]any{}
	var walk func(e *filterExpr)
	walk = func(e *filterExpr) {
		switch e.op {
		case "and":
			walk(e.left)
			walk(e.right)
		case "cmp":
			if e.cmpOp == "eq" && !strings.ContainsAny(e.attr, ".:") {
				out[e.attr] = e.value
			}
		}
	}
	walk(f)
	return out
}

// eqValue returns the value when the filter is exactly `attr eq "value"`.
func (f *filterExpr) eqValue(attr string) (string, bool) {
	if f.op != "cmp" || f.cmpOp != "eq" || !strings.EqualFold(f.attr, attr) {
		return "", false
	}
	s, ok := f.value.(string)
	return s, ok
}

// lookupValues returns the values at path in v: an attribute name, optionally
// schema-qualified and with one sub-attribute (emails.value). Multi-valued
// attributes yield each element.
func lookupValues(v any, path string) []any {
	m, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	if len(path) > 4 && strings.EqualFold(path[:4], "urn:") {
		i := strings.LastIndexByte(path, ':')
		schema, rest := path[:i], path[i+1:]
		if !strings.EqualFold(schema, SchemaUser) && !strings.EqualFold(schema, SchemaGroup) {
			c, ok := m[keyOf(m, schema)].(map[string]any)
			if !ok {
				return nil
			}
			m = c
		}
		path = rest
	}
	attr, sub, _ := strings.Cut(path, ".")
	cur, ok := m[keyOf(m, attr)]
	if !ok {
		return nil
	}
	var items []any
	if arr, ok := cur.([]any); ok {
		items = arr
	} else {
		items = []any{cur}
	}
	if sub == "" {
		return items
	}
	var out []any
	for _, it := range items {
		if im, ok := it.(map[string]any); ok {
			if x, ok := im[keyOf(im, sub)]; ok {
				out = append(out, x)
			}
		}
	}
	return out
}

func compare(op string, have, want any) bool {
	if hm, ok := have.(map[string]any); ok {
		// A complex value compared with a scalar: compare its "value".
		have = hm[keyOf(hm, "value")]
	}
	if want == nil {
		return op == "eq" && have == nil
	}
	switch w := want.(type) {
	case bool:
		switch h := have.(type) {
		case bool:
			return op == "eq" && h == w
		case string:
			b, err := strconv.ParseBool(h)
			return err == nil && op == "eq" && b == w
		}
		return false
	}
	hs, ok := scalarString(have)
	if !ok {
		return false
	}
	ws, _ := scalarString(want)
	hs, ws = strings.ToLower(hs), strings.ToLower(ws)
	switch op {
	case "eq":
		return hs == ws
	case "co":
		return strings.Contains(hs, ws)
	case "sw":
		return strings.HasPrefix(hs, ws)
	case "ew":
		return strings.HasSuffix(hs, ws)
	}
	return false
}
