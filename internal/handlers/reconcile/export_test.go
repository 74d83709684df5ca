package reconcile

// BrakeReason exports brakeReason for the boundary tests.
var BrakeReason = brakeReason
