package config

import (
	"strings"
	"testing"
)

// JML_SHARED_ID_SPACE: generic and roster by default; a declared list
// replaces it; a name that cannot be a source is refused at start.
func TestSharedIDSpace(t *testing.T) {
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if s := c.IDSpaces(); s.Space("generic") != "hr" || s.Space("roster") != "hr" || s.Space("bamboohr") != "bamboohr" {
		t.Fatalf("default shared space = %v", s.Shared())
	}
	t.Setenv("JML_SHARED_ID_SPACE", "generic,roster,bamboohr")
	if c, err = Load(); err != nil {
		t.Fatal(err)
	}
	if s := c.IDSpaces(); s.Space("bamboohr") != "hr" || s.Space("gusto") != "gusto" {
		t.Fatalf("declared shared space = %v", s.Shared())
	}
	t.Setenv("JML_SHARED_ID_SPACE", "generic,Email")
	if _, err := Load(); err == nil || !strings.Contains(err.Error(), "JML_SHARED_ID_SPACE") {
		t.Fatalf("Load: %v, want an error naming JML_SHARED_ID_SPACE", err)
	}
}
