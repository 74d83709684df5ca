// Package report turns evidence records into the reports auditors ask for:
// the deprovisioning report (per leaver: HR effective time, time accepted,
// time Sentry confirmed the removal, time to revoke against an SLA and why
// it was missed; a summary with percentiles; the mapping to SOC 2 CC6.2 /
// CC6.3, ISO 27001:2022 A.5.18, PCI DSS 8.2.5 and FedRAMP PS-4; a
// reproducible random sample), written as one self-contained printable
// HTML file with an inline SVG histogram, as CSV or as JSON with the same
// rows. It reads records only (state.Evidence); it does no I/O of its own.
package report
