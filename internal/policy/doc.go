// Package policy reads and validates the YAML policy (JML_POLICY_FILE): who is
// protected, which org role and teams each person should have, which teams the
// daemon manages, and the leaver, suspend, brake and reconcile options. Errors
// name the file, the line and the field. It owns the policy's shape and defaults;
// it must not call Sentry or read the environment.
package policy
