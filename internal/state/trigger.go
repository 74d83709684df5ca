package state

import "context"

type triggerKey struct{}

// WithTrigger returns ctx carrying t: the evidence records written under it
// name t as their trigger (the worker sets the event's, the reconciler its
// run's).
func WithTrigger(ctx context.Context, t Trigger) context.Context {
	return context.WithValue(ctx, triggerKey{}, t)
}

// TriggerFrom returns the trigger ctx carries.
func TriggerFrom(ctx context.Context) (Trigger, bool) {
	t, ok := ctx.Value(triggerKey{}).(Trigger)
	return t, ok
}
