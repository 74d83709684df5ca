package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sentry-jml/sentry-jml/cmd/internal/config"
	"github.com/sentry-jml/sentry-jml/cmd/internal/wire"
	"github.com/sentry-jml/sentry-jml/internal/alert"
	"github.com/sentry-jml/sentry-jml/internal/app"
	"github.com/sentry-jml/sentry-jml/internal/embednats"
	"github.com/sentry-jml/sentry-jml/internal/natsconn"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/memstate"
	"github.com/sentry-jml/sentry-jml/internal/state/redisstate"
	"github.com/sentry-jml/sentry-jml/internal/telemetry"
)

// Files in the data dir that `jml` subcommands read.
const (
	genericSecretFile = "generic.secret"
	natsURLFile       = "nats.url"
	// sandboxSCIMTokenFile holds the embedded sandbox's generated SCIM token.
	sandboxSCIMTokenFile = "sandbox-scim.token"
	adminAddrFile        = "admin.addr"
	httpAddrFile         = "http.addr"
	natsStoreDir         = "nats"
)

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	sys, err := startAll(ctx, cfg, runOptions{
		sentryConfigured: config.SentryConfigured(),
		getenv:           os.Getenv,
		stdout:           stdout,
		logs:             stderr,
	})
	if err != nil {
		return err
	}
	sys.banner(stdout)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			if err := sys.reloadPolicy(); err != nil {
				sys.log.Error("policy reload refused; the previous policy stays in force", "err", err)
			} else {
				sys.log.Info("policy reloaded", "file", cfg.PolicyFile)
			}
			continue
		case <-ctx.Done():
		case err = <-sys.failed:
			sys.log.Error("component failed; shutting down", "err", err)
		}
		break
	}
	sys.Close()
	return err
}

type runOptions struct {
	sentryConfigured bool
	// noWorker starts NATS and the receiver only (bench revoke runs the
	// worker as its own process).
	noWorker bool
	// getenv reads the OTEL_* variables (nil: none set). `jml run` is the one
	// process whose traces default to none when OTEL_TRACES_EXPORTER is unset.
	getenv func(string) string
	stdout io.Writer // console spans
	logs   io.Writer // JSON logs
	// telemetry overrides the providers (tests use an in-memory span exporter).
	telemetry *telemetry.Telemetry
}

// system is a running all-in-one instance.
type system struct {
	cfg        config.Common
	log        *slog.Logger
	tel        *telemetry.Telemetry
	ns         *embednats.Server
	nc         *nats.Conn
	coord      state.Coordinator
	sandbox    *sentrytest.Sandbox
	sandboxURL string
	coordName  string
	servers    []*http.Server
	httpAddr   string
	adminAddr  string
	cancel     context.CancelFunc
	workerDone chan error
	failed     chan error
	policy     atomic.Pointer[policy.Policy]
	adminAuth  config.AdminAuth
	alerts     *alert.Notifier
	worker     *app.Worker
	sentry     *sentry.Client
	sandboxSrv *http.Server // the embedded sandbox's server, shut down last
	// sandboxDrain is how long the embedded sandbox's graceful shutdown took.
	sandboxDrain time.Duration
}

// currentPolicy is the policy in force (replaced on SIGHUP).
func (s *system) currentPolicy() policy.Policy { return *s.policy.Load() }

// reloadPolicy re-reads JML_POLICY_FILE; a bad file keeps the old policy.
func (s *system) reloadPolicy() error {
	pol, err := s.cfg.Policy()
	if err != nil {
		return err
	}
	if err := s.adminAuth.CheckApprovals(pol); err != nil {
		return err
	}
	s.policy.Store(&pol)
	return nil
}

func startAll(parent context.Context, cfg config.Common, o runOptions) (_ *system, err error) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	s := &system{cfg: cfg, cancel: cancel, failed: make(chan error, 4), log: config.Logger(o.logs, cfg.LogLevel)}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("JML_DATA_DIR: %w", err)
	}
	// The data dir holds secrets (generic.secret, admin.token, nats.url).
	if err := os.Chmod(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("JML_DATA_DIR: %w", err)
	}

	pol, err := cfg.Policy()
	if err != nil {
		return nil, err
	}
	if s.adminAuth, err = cfg.AdminAuth(); err != nil {
		return nil, err
	}
	if err := s.adminAuth.CheckApprovals(pol); err != nil {
		return nil, err
	}

	// Telemetry.
	s.tel = o.telemetry
	if s.tel == nil {
		getenv := o.getenv
		if getenv == nil {
			getenv = func(string) string { return "" }
		}
		topts, err := config.TelemetryOptions(getenv, "sentry-jml", "none")
		if err != nil {
			return nil, err
		}
		topts.Console = o.stdout
		if s.tel, err = telemetry.New(ctx, topts); err != nil {
			return nil, err
		}
	}

	// Sentry: the real one when configured, else the sandbox.
	scfg := sentry.Config{BaseURL: cfg.SentryBaseURL(), Org: cfg.SentryOrg, Token: cfg.SentryToken, SCIMToken: cfg.SentrySCIMToken}
	if o.sentryConfigured {
		if err := cfg.CheckSentry(); err != nil {
			return nil, err
		}
	} else {
		// The sandbox issues a SCIM token as Sentry does when SCIM is enabled;
		// the daemon uses it for its SCIM calls, as JML_SENTRY_SCIM_TOKEN
		// would be used against a real Sentry.
		scimToken, err := sandboxSCIMToken(cfg)
		if err != nil {
			return nil, err
		}
		sopts := sentrytest.Options{Token: cfg.SandboxToken, SCIMToken: scimToken}
		if err := withSpecCheck(&sopts); err != nil {
			return nil, err
		}
		s.sandbox = sentrytest.New(sopts)
		addr, err := s.serve(cfg.SandboxAddr, s.sandbox, "JML_SANDBOX_ADDR")
		if err != nil {
			return nil, err
		}
		s.sandboxURL = "http://" + addr
		s.sandboxSrv = s.servers[len(s.servers)-1]
		scfg.BaseURL, scfg.Org, scfg.Token, scfg.SCIMToken, scfg.AllowAnyToken = s.sandboxURL, "acme", cfg.SandboxToken, scimToken, true
	}
	// Coordination: Redis when configured, else in-process.
	var redis *redisstate.Store
	if cfg.RedisURL != "" || len(cfg.RedisAddrs) > 0 {
		rs, err := redisstate.Open(ctx, cfg.RedisOptions())
		if err != nil {
			return nil, fmt.Errorf("JML_REDIS_URL: %w", err)
		}
		s.coord, s.coordName, redis = rs, "redis", rs
	} else {
		s.coord = memstate.New(nil)
		s.coordName = "embedded (in-process)"
	}
	srcEnv, err := config.Sources()
	if err != nil {
		return nil, err
	}
	alerts, err := cfg.Alerts(s.log, s.tel.MeterProvider)
	if err != nil {
		return nil, err
	}
	s.alerts = alerts

	// Embedded NATS, reachable by `jml` subcommands through the URL in the data
	// dir, which carries the server's generated credentials (mode 0600).
	// The sandbox lives in memory and starts from its seed, so with the
	// sandbox the JetStream state (directory, links, snapshots, evidence, runs)
	// starts afresh too: a directory that remembers people the new sandbox
	// never had would make the first reconcile halt on removals.
	if s.sandbox != nil {
		if err := resetSandboxState(cfg.DataDir); err != nil {
			return nil, err
		}
		s.log.Warn("sandbox: the Sentry sandbox starts from its seed, so the JetStream state in the data dir was reset with it (directory, evidence, runs); secrets and the admin token are kept",
			"dir", filepath.Join(cfg.DataDir, natsStoreDir))
	}
	s.ns, err = embednats.Start(embednats.Options{StoreDir: filepath.Join(cfg.DataDir, natsStoreDir), Listen: true, Port: cfg.NATSPort})
	if err != nil {
		if cfg.NATSPort != 0 {
			return nil, fmt.Errorf("JML_NATS_PORT=%d: %w", cfg.NATSPort, err)
		}
		return nil, err
	}
	if err := writePrivate(filepath.Join(cfg.DataDir, natsURLFile), []byte(s.ns.ClientURL()+"\n")); err != nil {
		return nil, fmt.Errorf("JML_DATA_DIR: %w", err)
	}
	// A connection the server closes for good (a protocol error) is not
	// reopened: /healthz fails and the process shuts down, to be restarted.
	s.nc, err = s.ns.Connect("jml-run", natsconn.Options(natsconn.Config{Name: "jml-run", Logger: s.log, OnClosed: func(err error) {
		select {
		case s.failed <- fmt.Errorf("nats: %w", err):
		default:
		}
	}})...)
	if err != nil {
		return nil, err
	}

	// Receiver: the generic source's secret is generated into the data dir
	// unless configured; other sources are enabled by their secrets.
	secret, err := genericSecret(cfg)
	if err != nil {
		return nil, err
	}
	specs := maps.Clone(srcEnv)
	g := specs["generic"]
	g.Secrets = config.Secrets(secret)
	specs["generic"] = g
	base := wire.Base{Cfg: cfg, Log: s.log, Tel: s.tel, NC: s.nc, Ready: app.NewReadiness(s.nc, true), Sources: srcEnv}
	recv, err := wire.Receiver(ctx, base, specs)
	if err != nil {
		return nil, err
	}
	if s.httpAddr, err = s.serve(cfg.HTTPAddr, recv, "JML_HTTP_ADDR"); err != nil {
		return nil, err
	}
	// `jml send-sample` with this data dir sends to this receiver, with this
	// secret: the two always belong to one instance.
	if err := os.WriteFile(filepath.Join(cfg.DataDir, httpAddrFile), []byte(s.httpAddr+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("JML_DATA_DIR: %w", err)
	}
	if o.noWorker {
		return s, nil
	}
	// Worker and scheduler, wired as in every process (wire).
	host, _ := os.Hostname()
	s.policy.Store(&pol)
	owner := fmt.Sprintf("%s:%d:%s", host, os.Getpid(), randomID())
	wp := wire.WorkerParts{Coord: s.coord, Sentry: scfg, SentryErr: "sentry client", Policy: s.currentPolicy, Auth: s.adminAuth,
		Owner: owner, Role: "all-in-one", Target: s.target(), Alerts: alerts, EvidenceKeyGenerated: true,
		Status: func(context.Context) any { return s.status() }, Redis: redis}
	wk, err := wire.NewWorker(ctx, base, wp)
	if err != nil {
		return nil, err
	}
	s.worker, s.sentry = wk.App, wk.Sentry
	if s.adminAddr, err = s.serve(cfg.AdminAddr, wk.Admin, "JML_ADMIN_ADDR"); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(cfg.DataDir, adminAddrFile), []byte(s.adminAddr+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("JML_DATA_DIR: %w", err)
	}
	s.workerDone = make(chan error, 1)
	go func() {
		err := wk.Run(ctx)
		if err != nil && ctx.Err() == nil {
			s.failed <- fmt.Errorf("worker: %w", err)
		}
		s.workerDone <- err
	}()
	return s, nil
}

// serve listens on addr and serves h in the background; it returns the bound address.
func (s *system) serve(addr string, h http.Handler, envName string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("%s=%s: %w", envName, addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	drainNew(srv)
	s.servers = append(s.servers, srv)
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.failed <- fmt.Errorf("%s: %w", envName, err)
		}
	}()
	return ln.Addr().String(), nil
}

// Close shuts down in order: stop accepting webhooks, drain the worker,
// release the Sentry connections, stop the embedded sandbox, close NATS,
// flush telemetry.
func (s *system) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := len(s.servers) - 1; i >= 0; i-- {
		if s.servers[i] != s.sandboxSrv {
			_ = s.servers[i].Shutdown(ctx)
		}
	}
	if s.cancel != nil {
		s.cancel()
	}
	if s.workerDone != nil {
		select {
		case <-s.workerDone:
		case <-ctx.Done():
		}
	}
	// The worker is done with Sentry: drop the pooled connections, so a
	// Sentry (or sandbox) shutting down is not kept waiting by them.
	if s.sentry != nil {
		s.sentry.Close()
	}
	// The embedded sandbox goes last: the worker used it until now.
	if s.sandboxSrv != nil {
		start := time.Now()
		if err := s.sandboxSrv.Shutdown(ctx); err != nil {
			s.log.Warn("sandbox shutdown", "error", err.Error())
		}
		s.sandboxDrain = time.Since(start)
	}
	if s.nc != nil {
		s.nc.Close()
	}
	if s.ns != nil {
		s.ns.Shutdown()
	}
	if s.coord != nil {
		_ = s.coord.Close()
	}
	if s.alerts != nil {
		_ = s.alerts.Close(ctx)
	}
	if s.tel != nil {
		_ = s.tel.Shutdown(ctx)
	}
}

// target is recorded in evidence: which Sentry the changes went to.
func (s *system) target() string {
	if s.sandbox != nil {
		return "sandbox"
	}
	return "sentry"
}

func (s *system) status() map[string]any {
	st := map[string]any{"version": version(), "coordination": s.coordName, "nats": s.ns.RedactedURL(), "receiver": s.httpAddr}
	if s.sandbox != nil {
		st["sentry"] = map[string]any{"target": "sandbox", "url": s.sandboxURL}
	} else {
		st["sentry"] = map[string]any{"target": "sentry", "url": s.cfg.SentryBaseURL(), "org": s.cfg.SentryOrg}
	}
	return st
}

func (s *system) banner(w io.Writer) {
	fmt.Fprintf(w, "sentry-jml %s is running (all-in-one)\n", version())
	fmt.Fprintf(w, "  webhook receiver  http://%s   POST /hooks/generic, GET /healthz /readyz\n", s.httpAddr)
	fmt.Fprintf(w, "  admin API         http://%s   GET /healthz /readyz /metrics; /v1/* with a bearer token\n", s.adminAddr)
	fmt.Fprintf(w, "  NATS (embedded)   %s   JetStream on disk in %s\n", s.ns.RedactedURL(), filepath.Join(s.cfg.DataDir, natsStoreDir))
	fmt.Fprintf(w, "  coordination      %s\n", s.coordName)
	abs, _ := filepath.Abs(s.cfg.DataDir)
	fmt.Fprintf(w, "  data dir          %s   (JML_DATA_DIR: send-sample and the CLI find this instance through it)\n", abs)
	if s.sandbox != nil {
		fmt.Fprintf(w, "  Sentry            SANDBOX at %s (org acme, token from JML_SANDBOX_TOKEN)\n", s.sandboxURL)
		fmt.Fprintf(w, "                    *** nothing reaches a real Sentry: set JML_SENTRY_URL/ORG/TOKEN for that ***\n")
	} else {
		fmt.Fprintf(w, "  Sentry            %s (org %s)\n", s.cfg.SentryBaseURL(), s.cfg.SentryOrg)
	}
	fmt.Fprintf(w, "  generic secret    %s (mode 0600; never printed)\n", genericSecretSource(s.cfg))
	if s.sandbox != nil {
		fmt.Fprintf(w, "  SCIM token        %snever printed; the daemon's SCIM calls use it; GET %s/_sandbox/scim shows it)\n", sandboxSCIMTokenSource(s.cfg), s.sandboxURL)
	}
	fmt.Fprintf(w, "  admin token       %s\n", adminTokenSource(s.adminAuth))
	fmt.Fprintln(w)
	if s.sandbox != nil {
		fmt.Fprintln(w, "Send a signed sample leaver (in another terminal, same environment):")
		fmt.Fprintln(w, "  go run ./cmd/jml send-sample leaver --email jane.doe@acme.test")
		fmt.Fprintln(w, "Then watch jane leave the sandbox (an empty list means she is gone):")
		fmt.Fprintf(w, "  curl -s -H \"Authorization: Bearer ${JML_SANDBOX_TOKEN:-sandbox}\" '%s/api/0/organizations/acme/members/?query=email:jane.doe@acme.test'\n", s.sandboxURL)
	} else {
		fmt.Fprintln(w, "Send a signed sample event: go run ./cmd/jml send-sample leaver --email <someone>")
	}
}

// adminTokenSource says where the admin API's tokens come from, never a token.
func adminTokenSource(a config.AdminAuth) string {
	if a.Generated != "" {
		return a.Generated + " (mode 0600; never printed; the jml CLI on this machine reads it)"
	}
	src := []string{}
	if a.Named < len(a.Operators) {
		src = append(src, "JML_ADMIN_TOKEN")
	}
	if a.Named > 0 {
		src = append(src, fmt.Sprintf("JML_ADMIN_TOKENS_FILE (%d named operators)", a.Named))
	}
	return "from " + strings.Join(src, " and ")
}

// writePrivate replaces path with data through a temporary file of mode 0600,
// so the file is never readable by others, even if an older one was.
func writePrivate(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// sandboxSCIMTokenSource says where the embedded sandbox's SCIM token comes
// from, never the token.
func sandboxSCIMTokenSource(cfg config.Common) string {
	if cfg.SandboxSCIMToken != "" {
		return "from JML_SANDBOX_SCIM_TOKEN ("
	}
	return filepath.Join(cfg.DataDir, sandboxSCIMTokenFile) + " (mode 0600; "
}

// sandboxSCIMToken returns JML_SANDBOX_SCIM_TOKEN, or the token generated
// into the data dir on first start (mode 0600, reused on restart, never
// printed): 64 hex digits, the shape of Sentry's SCIM integration tokens.
func sandboxSCIMToken(cfg config.Common) (string, error) {
	if cfg.SandboxSCIMToken != "" {
		return cfg.SandboxSCIMToken, nil
	}
	path := filepath.Join(cfg.DataDir, sandboxSCIMTokenFile)
	if b, err := os.ReadFile(path); err == nil {
		if tok := strings.TrimSpace(string(b)); tok != "" {
			return tok, nil
		}
		return "", fmt.Errorf("sandbox SCIM token: %s is empty", path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("sandbox SCIM token: %w", err)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("sandbox SCIM token: %w", err)
	}
	tok := hex.EncodeToString(b)
	if err := writePrivate(path, []byte(tok+"\n")); err != nil {
		return "", fmt.Errorf("sandbox SCIM token: %w", err)
	}
	return tok, nil
}

func genericSecretSource(cfg config.Common) string {
	if cfg.GenericSecret != "" {
		return "from JML_SOURCE_GENERIC_SECRET"
	}
	return filepath.Join(cfg.DataDir, genericSecretFile)
}

// resetSandboxState removes the embedded server's JetStream files under
// dataDir (nothing else: the generated secrets stay).
func resetSandboxState(dataDir string) error {
	if err := os.RemoveAll(filepath.Join(dataDir, natsStoreDir)); err != nil {
		return fmt.Errorf("JML_DATA_DIR: resetting the sandbox's JetStream state: %w", err)
	}
	return nil
}

// genericSecret returns JML_SOURCE_GENERIC_SECRET, or the secret generated into
// the data dir on first start (created with mode 0600, never printed).
func genericSecret(cfg config.Common) (string, error) {
	if cfg.GenericSecret != "" {
		return cfg.GenericSecret, nil
	}
	path := filepath.Join(cfg.DataDir, genericSecretFile)
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("generic secret: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return "", err
	}
	secret := "whsec_" + base64.StdEncoding.EncodeToString(key)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", fmt.Errorf("generic secret: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString(secret + "\n"); err != nil {
		return "", fmt.Errorf("generic secret: %w", err)
	}
	return secret, nil
}

func randomID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}
