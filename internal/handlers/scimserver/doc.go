// Package scimserver is the inbound SCIM 2.0 service provider (RFC 7643/7644)
// that Okta and Microsoft Entra provision users and groups into, at /scim/v2/.
// It keeps the pushed resources in a Store (the JML_SCIM bucket), turns each
// state change into a lifecycle event (joiner, suspend or leaver, rehire,
// update with the user's full group list) and publishes it through a Publisher
// before answering. It owns the SCIM wire format only: it must not touch Sentry,
// read configuration or import a state backend.
package scimserver
