package scimserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
)

// Schema URNs (RFC 7643).
const (
	SchemaUser           = "urn:ietf:params:scim:schemas:core:2.0:User"
	SchemaGroup          = "urn:ietf:params:scim:schemas:core:2.0:Group"
	SchemaEnterpriseUser = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	SchemaPatchOp        = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	SchemaListResponse   = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	SchemaError          = "urn:ietf:params:scim:api:messages:2.0:Error"
)

// scimError is an RFC 7644 §3.12 error: an HTTP status, an optional scimType and
// a detail safe to show the client.
type scimError struct {
	Status   int
	SCIMType string
	Detail   string
}

func (e *scimError) Error() string {
	if e.SCIMType != "" {
		return fmt.Sprintf("scim %d %s: %s", e.Status, e.SCIMType, e.Detail)
	}
	return fmt.Sprintf("scim %d: %s", e.Status, e.Detail)
}

func badRequest(scimType, format string, args ...any) *scimError {
	return &scimError{Status: 400, SCIMType: scimType, Detail: fmt.Sprintf(format, args...)}
}

// patchOp is one operation of a PatchOp request (RFC 7644 §3.5.2).
type patchOp struct {
	Op    string          `json:"op"`
	Path  string          `json:"path"`
	Value json.RawMessage `json:"value"`
}

type patchRequest struct {
	Schemas    []string  `json:"schemas"`
	Operations []patchOp `json:"Operations"`
}

// parsePatch decodes a PatchOp body. Operation names are matched
// case-insensitively (Entra sends "Replace", "Add", "Remove").
func parsePatch(body []byte) ([]patchOp, error) {
	var req patchRequest
	if err := decodeStrict(body, &req); err != nil {
		return nil, badRequest("invalidSyntax", "body is not a PatchOp: %s", err)
	}
	if len(req.Operations) == 0 {
		return nil, badRequest("invalidSyntax", "PatchOp needs at least one operation in Operations")
	}
	if len(req.Operations) > 1000 {
		return nil, badRequest("tooMany", "at most 1000 operations per PatchOp")
	}
	for i := range req.Operations {
		op := strings.ToLower(strings.TrimSpace(req.Operations[i].Op))
		switch op {
		case "add", "replace", "remove":
		default:
			return nil, badRequest("invalidSyntax", "operation %d: op %q is not add, replace or remove", i, truncate(req.Operations[i].Op))
		}
		req.Operations[i].Op = op
	}
	return req.Operations, nil
}

// decodeStrict decodes one JSON value (numbers as json.Number) and refuses
// trailing data.
func decodeStrict(body []byte, v any) error {
	// RFC 7159 leaves repeated member names undefined, and a repeated
	// "active" or "userName" would be read as its last occurrence: the v2
	// decoder refuses them (and invalid UTF-8) by default.
	if _, err := jsontext.NewDecoder(bytes.NewReader(body)).ReadValue(); err != nil {
		var sy *jsontext.SyntacticError
		if errors.As(err, &sy) && errors.Is(sy.Err, jsontext.ErrDuplicateName) {
			return badRequest("invalidSyntax", "duplicate member name %s", truncate(string(sy.JSONPointer)))
		}
		if errors.As(err, &sy) && sy.Err != nil && strings.Contains(sy.Err.Error(), "UTF-8") {
			return badRequest("invalidSyntax", "invalid UTF-8")
		}
		return fmt.Errorf("malformed JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("malformed JSON")
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the JSON value")
	}
	return nil
}

// decodeValue decodes an operation value; absent is nil.
func decodeValue(raw json.RawMessage) (any, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	var v any
	if err := decodeStrict(raw, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// attrPath is a parsed PATCH path: attr[filter].sub, attr.sub or attr, possibly
// qualified by a schema URN.
type attrPath struct {
	schema string // extension schema URN ("" for the core schema)
	attr   string // "" only when the path is an extension URN itself
	filter *filterExpr
	sub    string
}

// patcher applies operations to one resource. readOnly lists attributes the
// client may not set (ignored, as Okta sends "id" in path-less replaces).
type patcher struct {
	coreSchema string
	extensions []string
	readOnly   map[string]bool
}

// apply runs ops against res in order. res is modified in place.
func (p *patcher) apply(res map[string]any, ops []patchOp) error {
	for i, op := range ops {
		v, err := decodeValue(op.Value)
		if err != nil {
			return badRequest("invalidValue", "operation %d: value: %s", i, err)
		}
		if err := p.applyOne(res, op.Op, strings.TrimSpace(op.Path), v); err != nil {
			if se, ok := err.(*scimError); ok {
				se.Detail = fmt.Sprintf("operation %d: %s", i, se.Detail)
				return se
			}
			return err
		}
	}
	return nil
}

func (p *patcher) applyOne(res map[string]any, op, path string, v any) error {
	if path == "" {
		if op == "remove" {
			return badRequest("noTarget", "remove needs a path")
		}
		obj, ok := v.(map[string]any)
		if !ok {
			return badRequest("invalidValue", "%s without a path needs an object value", op)
		}
		for _, k := range sortedKeys(obj) {
			val := obj[k]
			if ext := p.extension(k); ext != "" {
				if sub, ok := val.(map[string]any); ok {
					for _, k2 := range sortedKeys(sub) {
						if err := p.at(res, op, attrPath{schema: ext, attr: k2}, sub[k2]); err != nil {
							return err
						}
					}
					continue
				}
			}
			ap, err := p.parsePath(k)
			if err != nil {
				return err
			}
			if err := p.at(res, op, ap, val); err != nil {
				return err
			}
		}
		return nil
	}
	ap, err := p.parsePath(path)
	if err != nil {
		return err
	}
	if op != "remove" && v == nil {
		return badRequest("invalidValue", "%s %s needs a value", op, truncate(path))
	}
	return p.at(res, op, ap, v)
}

// extension returns the known extension URN equal to s (case-insensitive).
func (p *patcher) extension(s string) string {
	for _, u := range p.extensions {
		if strings.EqualFold(s, u) {
			return u
		}
	}
	return ""
}

// splitSchema splits a leading schema URN off a path: a known schema
// (matched case-insensitively: URNs hold ':' and '.') or, for an unknown one,
// up to the last ':' before any '['. The core schema is dropped (schema "");
// whole is true when s names a known extension itself.
func (p *patcher) splitSchema(s string) (schema, rest string, whole bool, err error) {
	if len(s) <= 4 || !strings.EqualFold(s[:4], "urn:") {
		return "", s, false, nil
	}
	for _, u := range append([]string{p.coreSchema}, p.extensions...) {
		if len(s) < len(u) || !strings.EqualFold(s[:len(u)], u) {
			continue
		}
		switch {
		case len(s) == len(u) && u == p.coreSchema:
			return "", "", false, badRequest("invalidPath", "path %q names a schema, not an attribute", truncate(s))
		case len(s) == len(u):
			return u, "", true, nil
		case s[len(u)] == ':' && u == p.coreSchema:
			return "", s[len(u)+1:], false, nil
		case s[len(u)] == ':':
			return u, s[len(u)+1:], false, nil
		}
	}
	end := len(s)
	if i := strings.IndexByte(s, '['); i >= 0 {
		end = i
	}
	i := strings.LastIndexByte(s[:end], ':')
	if i < 0 {
		return "", "", false, badRequest("invalidPath", "malformed path %q", truncate(s))
	}
	return s[:i], s[i+1:], false, nil
}

func (p *patcher) parsePath(s string) (attrPath, error) {
	if len(s) > 512 {
		return attrPath{}, badRequest("invalidPath", "path longer than 512 characters")
	}
	schema, rest, whole, err := p.splitSchema(s)
	if err != nil {
		return attrPath{}, err
	}
	if whole {
		return attrPath{schema: schema}, nil
	}
	ap := attrPath{schema: schema}
	name, rest := splitName(rest)
	if name == "" {
		return attrPath{}, badRequest("invalidPath", "malformed path %q", truncate(s))
	}
	ap.attr = name
	if strings.HasPrefix(rest, "[") {
		end := closingBracket(rest)
		if end < 0 {
			return attrPath{}, badRequest("invalidPath", "unbalanced [ in path %q", truncate(s))
		}
		f, err := parseFilter(rest[1:end])
		if err != nil {
			return attrPath{}, badRequest("invalidPath", "path %q: %s", truncate(s), err)
		}
		ap.filter = f
		rest = rest[end+1:]
	}
	if strings.HasPrefix(rest, ".") {
		sub, r := splitName(rest[1:])
		if sub == "" || r != "" {
			return attrPath{}, badRequest("invalidPath", "malformed sub-attribute in path %q", truncate(s))
		}
		ap.sub = sub
		rest = ""
	}
	if rest != "" {
		return attrPath{}, badRequest("invalidPath", "malformed path %q", truncate(s))
	}
	return ap, nil
}

// splitName splits a leading ATTRNAME (RFC 7644 §3.10, plus "$ref").
func splitName(s string) (string, string) {
	i := 0
	for i < len(s) {
		c := s[i]
		if c == '$' && i == 0 || c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
			i++
			continue
		}
		break
	}
	return s[:i], s[i:]
}

// closingBracket returns the index of the ']' closing s[0]=='[', skipping quoted strings.
func closingBracket(s string) int {
	inStr := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case inStr && c == '\\':
			i++
		case c == '"':
			inStr = !inStr
		case !inStr && c == ']':
			return i
		}
	}
	return -1
}

// multiValued lists the RFC 7643 multi-valued attributes (others are multi-valued
// when their current or new value is an array).
var multiValued = map[string]bool{
	"emails": true, "phonenumbers": true, "ims": true, "photos": true, "addresses": true,
	"groups": true, "entitlements": true, "roles": true, "x509certificates": true, "members": true,
}

func (p *patcher) at(res map[string]any, op string, ap attrPath, v any) error {
	if ap.schema == "" && p.readOnly[strings.ToLower(ap.attr)] {
		return nil // read-only: ignored (RFC 7644 §3.5.2 lets the provider ignore it)
	}
	container := res
	if ap.schema != "" {
		c, done, err := p.atSchema(res, op, ap, v)
		if done || err != nil {
			return err
		}
		container = c
	}
	switch {
	case ap.filter == nil && ap.sub == "":
		return atAttr(container, op, ap.attr, v)
	case ap.filter == nil:
		return atSub(container, op, ap, v)
	default:
		return atFiltered(container, op, ap, v)
	}
}

// atSchema returns the extension object ap names inside res (created unless
// removing); done is true when ap names the whole extension, which it then
// handled.
func (p *patcher) atSchema(res map[string]any, op string, ap attrPath, v any) (_ map[string]any, done bool, _ error) {
	key := keyOf(res, ap.schema)
	c, ok := res[key].(map[string]any)
	if !ok {
		if op == "remove" {
			return nil, true, nil
		}
		c = map[string]any{}
		res[key] = c
	}
	if ap.attr != "" {
		return c, false, nil
	}
	if op == "remove" {
		delete(res, key)
		return nil, true, nil
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, true, badRequest("invalidValue", "value for %s must be an object", ap.schema)
	}
	for _, k := range sortedKeys(obj) {
		if err := p.at(res, op, attrPath{schema: ap.schema, attr: k}, obj[k]); err != nil {
			return nil, true, err
		}
	}
	return nil, true, nil
}

// atAttr applies op to the attribute attr itself (no filter, no sub-attribute).
func atAttr(container map[string]any, op, attr string, v any) error {
	key := keyOf(container, attr)
	cur := container[key]
	multi := multiValued[strings.ToLower(attr)]
	switch op {
	case "remove":
		if arr, ok := cur.([]any); ok && v != nil {
			if rest := removeValues(arr, v); len(rest) > 0 {
				container[key] = rest
				return nil
			}
		}
		delete(container, key)
	case "add":
		addAttr(container, key, cur, v, multi)
	case "replace":
		if _, ok := v.([]any); multi && !ok {
			v = []any{v}
		}
		container[key] = v
	}
	return nil
}

// addAttr adds v to the attribute at key: appended to a multi-valued one,
// merged into a complex one, set otherwise.
func addAttr(container map[string]any, key string, cur, v any, multi bool) {
	curArr, isArr := cur.([]any)
	if _, newArr := v.([]any); isArr || newArr || multi {
		container[key] = appendValues(curArr, v)
		return
	}
	curObj, ok1 := cur.(map[string]any)
	newObj, ok2 := v.(map[string]any)
	if !ok1 || !ok2 {
		container[key] = v
		return
	}
	for _, k := range sortedKeys(newObj) {
		curObj[keyOf(curObj, k)] = newObj[k]
	}
}

// atSub applies op to attr.sub: in the complex value, or in every element of
// a multi-valued one.
func atSub(container map[string]any, op string, ap attrPath, v any) error {
	key := keyOf(container, ap.attr)
	cur, exists := container[key]
	set := func(m map[string]any) {
		if op == "remove" {
			delete(m, keyOf(m, ap.sub))
		} else {
			m[keyOf(m, ap.sub)] = v
		}
	}
	switch c := cur.(type) {
	case map[string]any:
		set(c)
		if len(c) == 0 {
			delete(container, key)
		}
	case []any:
		for _, el := range c {
			if m, ok := el.(map[string]any); ok {
				set(m)
			}
		}
	default:
		if op == "remove" {
			return nil
		}
		if exists && cur != nil {
			return badRequest("invalidPath", "%s is not a complex attribute", ap.attr)
		}
		if multiValued[strings.ToLower(ap.attr)] {
			container[key] = []any{map[string]any{ap.sub: v}}
		} else {
			container[key] = map[string]any{ap.sub: v}
		}
	}
	return nil
}

// atFiltered applies op to the elements of a multi-valued attribute that
// attr[filter] selects (or to their sub-attribute).
func atFiltered(container map[string]any, op string, ap attrPath, v any) error {
	key := keyOf(container, ap.attr)
	var arr []any
	switch c := container[key].(type) {
	case []any:
		arr = c
	case map[string]any:
		arr = []any{c}
	case nil:
	default:
		return badRequest("invalidFilter", "%s is not multi-valued", ap.attr)
	}
	var matched []int
	for i, el := range arr {
		if ap.filter.match(el) {
			matched = append(matched, i)
		}
	}
	if op == "remove" {
		if arr = removeMatched(arr, matched, ap.sub); len(arr) == 0 {
			delete(container, key)
		} else {
			container[key] = arr
		}
		return nil
	}
	if len(matched) == 0 {
		// Entra adds and replaces through filters that match nothing yet,
		// e.g. emails[type eq "work"].value on a user without a work email:
		// create the element the filter describes.
		el, err := seedElement(ap, v)
		if err != nil {
			return err
		}
		container[key] = append(arr, el)
		return nil
	}
	for _, i := range matched {
		if err := setMatched(arr, i, op, ap, v); err != nil {
			return err
		}
	}
	container[key] = arr
	return nil
}

// removeMatched drops the matched elements, or only their sub-attribute.
func removeMatched(arr []any, matched []int, sub string) []any {
	if sub != "" {
		for _, i := range matched {
			if m, ok := arr[i].(map[string]any); ok {
				delete(m, keyOf(m, sub))
			}
		}
		return arr
	}
	out := arr[:0:0]
	for i, el := range arr {
		if !containsInt(matched, i) {
			out = append(out, el)
		}
	}
	return out
}

// seedElement is the element a filter that matched nothing describes, with v set.
func seedElement(ap attrPath, v any) (map[string]any, error) {
	el := ap.filter.seed()
	if ap.sub != "" {
		el[ap.sub] = v
		return el, nil
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, badRequest("invalidValue", "value for %s[…] must be an object", ap.attr)
	}
	for _, k := range sortedKeys(obj) {
		el[keyOf(el, k)] = obj[k]
	}
	return el, nil
}

// setMatched adds or replaces on the matched element arr[i].
func setMatched(arr []any, i int, op string, ap attrPath, v any) error {
	if ap.sub != "" {
		if m, ok := arr[i].(map[string]any); ok {
			m[keyOf(m, ap.sub)] = v
		}
		return nil
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return badRequest("invalidValue", "value for %s[…] must be an object", ap.attr)
	}
	if op == "replace" {
		arr[i] = cloneMap(obj)
	} else if m, ok := arr[i].(map[string]any); ok {
		for _, k := range sortedKeys(obj) {
			m[keyOf(m, k)] = obj[k]
		}
	}
	return nil
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// appendValues appends v (one value or an array of values) to arr, skipping
// values already present (by "value" for complex values, by equality otherwise).
func appendValues(arr []any, v any) []any {
	vals, ok := v.([]any)
	if !ok {
		vals = []any{v}
	}
	out := append([]any(nil), arr...)
	for _, nv := range vals {
		dup := false
		for i, ov := range out {
			if sameValue(ov, nv) {
				dup = true
				if nm, ok := nv.(map[string]any); ok {
					out[i] = cloneMap(nm)
				}
				break
			}
		}
		if !dup {
			out = append(out, nv)
		}
	}
	return out
}

// removeValues removes from arr the elements matching v (one value or an array).
func removeValues(arr []any, v any) []any {
	vals, ok := v.([]any)
	if !ok {
		vals = []any{v}
	}
	out := []any{}
	for _, ov := range arr {
		drop := false
		for _, rv := range vals {
			if sameValue(ov, rv) {
				drop = true
				break
			}
		}
		if !drop {
			out = append(out, ov)
		}
	}
	return out
}

// sameValue compares complex values by their "value" sub-attribute when both
// have one, and anything else by deep equality.
func sameValue(a, b any) bool {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		av, aHas := am[keyOf(am, "value")]
		bv, bHas := bm[keyOf(bm, "value")]
		if aHas && bHas {
			return scalarEqual(av, bv)
		}
	}
	return reflect.DeepEqual(a, b)
}

func scalarEqual(a, b any) bool {
	as, aok := scalarString(a)
	bs, bok := scalarString(b)
	return aok && bok && as == bs
}

func scalarString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

// keyOf returns the key of m equal to name case-insensitively (attribute names
// are case-insensitive, RFC 7643 §2.1), or name when there is none.
func keyOf(m map[string]any, name string) string {
	if _, ok := m[name]; ok {
		return name
	}
	for k := range m {
		if strings.EqualFold(k, name) {
			return k
		}
	}
	return name
}

func sortedKeys(m map[string]any) []string {
	// Deterministic order: operations from one object are applied the same way
	// on every retry.
	return slices.Sorted(maps.Keys(m))
}

func cloneMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func truncate(s string) string {
	const max = 80
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
