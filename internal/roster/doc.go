// Package roster reads HR roster files (CSV with the header
// id,email,name,status,department,title,groups,manager_email, or a JSON array
// of person objects) with strict, line-numbered validation, and imports them
// into the directory as desired state. It changes desired state only: it never
// calls Sentry; removals an import implies are applied by reconcile under its
// brakes. It must not import the Sentry client or the handlers.
package roster
