// Package alert sends operator alerts (halted brakes, dead-letter growth,
// needs_human, disputed matches, a Sentry token refused) to outbound webhooks: a
// Slack-compatible incoming webhook and a generic JSON endpoint signed with
// Standard Webhooks. It owns the payload formats, a bounded queue per sink so a
// slow receiver never blocks the caller, retries with backoff, deduplication of
// identical alerts within a window, and the redaction that keeps tokens and
// secrets out of payloads and logs. It must not import the handlers, NATS, Redis
// or cmd/*; callers pass it plain values and the OpenTelemetry meter provider.
package alert
