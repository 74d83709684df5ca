package receiver

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestAcceptedWriteMatchesEncodingJSON: the hand-written success body is
// byte for byte what encoding/json wrote before (senders and tests parse
// it), including the omitted "ignored" member at zero.
func TestAcceptedWriteMatchesEncodingJSON(t *testing.T) {
	for _, a := range []accepted{{}, {Accepted: 1}, {Duplicates: 1}, {Accepted: 3, Duplicates: 2, Ignored: 7}, {Ignored: 1}, {Accepted: 1 << 40}} {
		rec := httptest.NewRecorder()
		a.write(rec, http.StatusAccepted)
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(a); err != nil {
			t.Fatal(err)
		}
		if rec.Code != http.StatusAccepted || rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%+v: status %d, content type %q", a, rec.Code, rec.Header().Get("Content-Type"))
		}
		if got := rec.Body.String(); got != want.String() {
			t.Errorf("%+v: body %q, want %q", a, got, want.String())
		}
	}
}
