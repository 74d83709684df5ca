package sentrytest

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// This file mirrors the DRF serializers Sentry runs over SCIM PATCH bodies
// (SCIMPatchRequestSerializer in src/sentry/core/endpoints/scim/members.py,
// SCIMTeamPatchRequestSerializer in src/sentry/core/endpoints/scim/teams.py):
// which bodies pass, and the error text Sentry json.dumps into the SCIM
// error's detail when they do not.

// kv is one key of an ordered JSON object (DRF keeps declaration order).
type kv struct {
	k string
	v any
}

type orderedObj []kv

func (o orderedObj) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(e.k)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(e.v)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// compactJSON is sentry.utils.json.dumps: compact separators.
func compactJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "{}"
	}
	return string(b)
}

// pyType names a decoded JSON value the way Python's type(x).__name__ does.
func pyType(v any) string {
	switch x := v.(type) {
	case map[string]any:
		return "dict"
	case []any:
		return "list"
	case string:
		return "str"
	case bool:
		return "bool"
	case json.Number:
		if strings.ContainsAny(x.String(), ".eE") {
			return "float"
		}
		return "int"
	case nil:
		return "NoneType"
	}
	return "object"
}

// decodeLoose decodes a request body as DRF's JSON parser would see it;
// an empty body is an empty dict. ok is false on a JSON parse error.
func decodeLoose(body []byte) (any, bool) {
	if len(bytes.TrimSpace(body)) == 0 {
		return map[string]any{}, true
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, false
	}
	return v, true
}

// charField validates a DRF CharField value; "" means valid.
func charField(v any, present bool, required bool) string {
	if !present {
		if required {
			return "This field is required."
		}
		return ""
	}
	switch x := v.(type) {
	case nil:
		return "This field may not be null."
	case string:
		if strings.TrimSpace(x) == "" {
			return "This field may not be blank."
		}
		return ""
	case json.Number:
		return ""
	}
	return "Not a valid string."
}

// listField validates a DRF ListField's outer shape; "" means valid.
func listField(v any, present bool) string {
	if !present {
		return "This field is required."
	}
	if v == nil {
		return "This field may not be null."
	}
	if _, ok := v.([]any); !ok {
		return `Expected a list of items but got type "` + pyType(v) + `".`
	}
	return ""
}

// maybeBool is resolve_maybe_bool_value: bools, and "true"/"false" in any case.
func maybeBool(v any) (bool, bool) {
	switch x := v.(type) {
	case bool:
		return x, true
	case string:
		switch strings.ToLower(x) {
		case "true":
			return true, true
		case "false":
			return false, true
		}
	}
	return false, false
}

// validateOps runs a ListField(child=op serializer) over Operations and
// returns the per-index errors (nil when all are valid). validOp names the
// accepted (lower-cased) ops; checkValue applies the users' OperationValue.
func validateOps(ops []any, validOp func(string) bool, checkValue bool) orderedObj {
	var out orderedObj
	for i, raw := range ops {
		op, ok := raw.(map[string]any)
		if !ok {
			out = append(out, kv{strconv.Itoa(i), map[string][]string{"non_field_errors": {"Invalid data. Expected a dictionary, but got " + pyType(raw) + "."}}})
			continue
		}
		var e orderedObj
		ov, present := op["op"]
		if msg := charField(ov, present, true); msg != "" {
			e = append(e, kv{"op", []string{msg}})
		} else {
			name := strings.ToLower(strings.TrimSpace(scalarString(ov)))
			if !validOp(name) {
				e = append(e, kv{"op", []string{`"` + name + `" is not a valid choice`}})
			}
		}
		if checkValue {
			vv, present := op["value"]
			switch {
			case !present:
				e = append(e, kv{"value", []string{"This field is required."}})
			case vv == nil:
				e = append(e, kv{"value", []string{"This field may not be null."}})
			default:
				_, isObj := vv.(map[string]any)
				_, isBool := maybeBool(vv)
				if !isObj && !isBool {
					e = append(e, kv{"value", []string{"value must be a boolean or object"}})
				}
			}
		}
		if pv, present := op["path"]; present {
			if msg := charField(pv, true, false); msg != "" {
				e = append(e, kv{"path", []string{msg}})
			}
		}
		if len(e) > 0 {
			out = append(out, kv{strconv.Itoa(i), e})
		}
	}
	return out
}

func scalarString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	}
	return ""
}
