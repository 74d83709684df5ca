package sentry

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzDecodeParity: a Sentry response body encoding/json accepts decodes to
// the same member with the faster decoder (names in any case, repeated
// names, odd UTF-8 included), so the switch changed speed, not meaning.
func FuzzDecodeParity(f *testing.F) {
	f.Add([]byte(`{"id":"12","email":"Jane@acme.test","name":"Jane","user":{"id":"7","email":"jane@acme.test","emails":[{"id":"1","email":"j@x.io","is_verified":true}]},"orgRole":"member","pending":false,"expired":false,"flags":{"idp:provisioned":true,"sso:linked":false},"teams":["a","b"],"teamRoles":[{"teamSlug":"a","role":"admin"},{"teamSlug":"b","role":null}],"dateCreated":"2024-03-01T10:00:00.123456Z","orgRoleList":[{"id":"member","name":"Member","desc":"x","scopes":["org:read"],"isAllowed":true}]}`))
	f.Add([]byte(`{"ID":"1","EMAIL":"a@b.c","role":"admin","orgRole":"","inviteStatus":"approved","pending":true,"user":null,"teams":null}`))
	f.Add([]byte(`{"id":"1","id":"2","email":"x\xffy@b.c","teamRole":"contributor","teamSlug":"t"}`))
	f.Add([]byte(`[{"id":"1"},{"id":"2","flags":{}}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var one, two memberJSON
		if json.Unmarshal(b, &one) != nil {
			return
		}
		if err := unmarshal(b, &two); err != nil {
			t.Fatalf("encoding/json accepts %q, the decoder refuses it: %v", b, err)
		}
		if !reflect.DeepEqual(one, two) {
			t.Fatalf("%q decodes differently:\nencoding/json %+v\nv2            %+v", b, one, two)
		}
	})
}
