// Package deploy holds no runtime code: it is the home of deploy_test.go, which keeps
// the deployment files honest in CI without Docker or a cluster. The tests parse
// docker-compose.yml, the Dockerfile, everything under deploy/compose (OpenTelemetry
// Collector, Prometheus and its alert rules, Grafana provisioning and dashboard) and
// deploy/k8s; check that every environment variable they set is one that
// cmd/internal/config reads (or a standard OTEL_* one), that references between
// services, secrets, volumes, ports and files resolve, that every process is scraped
// on its admin listener, and that every metric on the dashboard and in the alerts is on
// the live /metrics of a running `jml run` under that exact name (metrics_test.go). It
// must not be imported.
package deploy
