// Package workerproc is the worker process of the production split, shared by
// cmd/worker and `jml worker`: it reads the environment, connects to NATS and
// Redis, checks the Sentry token, serves the admin API and runs app.Worker
// until its context ends. It reloads the policy on SIGHUP.
package workerproc
