package jsstate

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
)

// TestCreateRetriesTimeoutsOnly: a create that timed out (a replicated
// stream on a busy cluster) is tried again; any other failure is answered at
// once; a cancelled caller stops the retries.
func TestCreateRetriesTimeoutsOnly(t *testing.T) {
	calls := 0
	v, err := withCreateRetry(context.Background(), func(context.Context) (int, error) {
		calls++
		switch calls {
		case 1:
			return 0, fmt.Errorf("create: %w", context.DeadlineExceeded)
		case 2:
			return 0, nats.ErrTimeout
		}
		return 7, nil
	})
	if err != nil || v != 7 || calls != 3 {
		t.Fatalf("timeouts: v=%d err=%v after %d calls, want 7 after 3", v, err, calls)
	}

	calls = 0
	bad := errors.New("stream name already in use with a different configuration")
	if _, err := withCreateRetry(context.Background(), func(context.Context) (int, error) { calls++; return 0, bad }); !errors.Is(err, bad) || calls != 1 {
		t.Fatalf("a configuration error: err=%v after %d calls, want it after 1", err, calls)
	}

	ctx, cancel := context.WithCancel(context.Background())
	calls = 0
	_, err = withCreateRetry(ctx, func(context.Context) (int, error) {
		calls++
		cancel()
		return 0, context.DeadlineExceeded
	})
	if !errors.Is(err, context.DeadlineExceeded) || calls != 1 {
		t.Fatalf("cancelled: err=%v after %d calls, want the timeout after 1", err, calls)
	}
}
