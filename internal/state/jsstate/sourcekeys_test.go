package jsstate_test

import (
	"context"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/embednats/natstest"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

// TestSourceKeysArming: without an arming no token is stored; one arming lets
// exactly one token in, whichever replica receives it (two handles on the same
// bucket race for it), and a stored token is accepted again.
func TestSourceKeysArming(t *testing.T) {
	_, _, js := natstest.Run(t)
	ctx := context.Background()
	a, err := jsstate.OpenSourceKeys(ctx, js, jsstate.Options{}, "gusto")
	if err != nil {
		t.Fatal(err)
	}
	b, err := jsstate.OpenSourceKeys(ctx, js, jsstate.Options{}, "gusto")
	if err != nil {
		t.Fatal(err)
	}
	if saved, err := a.ClaimVerificationToken(ctx, "attacker"); err != nil || saved {
		t.Fatalf("unarmed claim = %v %v", saved, err)
	}
	if _, err := a.Arm(ctx, 2*time.Hour, "op"); err == nil {
		t.Fatal("an arming longer than MaxArmWindow was accepted")
	}
	until, err := a.Arm(ctx, 0, "op")
	if err != nil || time.Until(until) < 9*time.Minute {
		t.Fatalf("Arm = %v %v", until, err)
	}
	if got, _ := b.ArmedUntil(ctx); !got.Equal(until) {
		t.Fatalf("replica sees armed until %v, want %v", got, until)
	}
	results := make(chan bool, 2)
	for i, k := range []*jsstate.SourceKeys{a, b} {
		go func() {
			saved, err := k.ClaimVerificationToken(ctx, []string{"token-a", "token-b"}[i])
			if err != nil {
				t.Error(err)
			}
			results <- saved
		}()
	}
	if n := btoi(<-results) + btoi(<-results); n != 1 {
		t.Fatalf("%d tokens stored for one arming", n)
	}
	toks, _ := a.VerificationTokens(ctx)
	if len(toks) != 1 {
		t.Fatalf("tokens %v", toks)
	}
	if saved, _ := b.ClaimVerificationToken(ctx, toks[0]); !saved {
		t.Fatal("the stored token was not accepted again")
	}
	if got, _ := a.ArmedUntil(ctx); time.Now().Before(got) {
		t.Fatalf("still armed until %v after the claim", got)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
