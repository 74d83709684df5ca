package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sentry-jml/sentry-jml/cmd/internal/config"
	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/signature"
)

func cmdSendSample(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return usageErrorf("send-sample: first argument is the event type (leaver, joiner, mover, suspend, rehire, update)")
	}
	typ := events.Type(args[0])
	if !typ.Valid() {
		return usageErrorf("send-sample: unknown type %q", args[0])
	}
	fs := flag.NewFlagSet("send-sample", flag.ContinueOnError)
	fs.SetOutput(stderr)
	email := fs.String("email", "", "the person's email (required unless --id)")
	id := fs.String("id", "", "the person's HR id")
	url := fs.String("url", "", "receiver base URL (default: the receiver of the `jml run` in $JML_DATA_DIR, else http://$JML_HTTP_ADDR)")
	eventID := fs.String("event-id", "", "webhook-id (default: a fresh one; repeat one to see duplicate handling)")
	dept := fs.String("department", "", "department")
	asJSON := fs.Bool("json", false, "print one JSON object: {\"url\",\"webhook_id\",\"status\",\"answer\"}")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *email == "" && *id == "" {
		return usageErrorf("send-sample: --email or --id is required")
	}
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	secret, from, err := sampleSecret(cfg)
	if err != nil {
		return err
	}
	secrets := config.Secrets(secret)
	key, err := signature.DecodeStandardSecret(secrets[0])
	if err != nil {
		return fmt.Errorf("send-sample: the generic secret %s: %w", from, err)
	}
	base := *url
	if base == "" {
		base = "http://" + sampleAddr(cfg)
	}
	status := map[events.Type]events.Status{events.Leaver: events.Terminated, events.Suspend: events.Suspended, events.Joiner: events.Active, events.Rehire: events.Active}[typ]
	now := time.Now().UTC()
	body, err := json.Marshal(map[string]any{
		"type":        typ,
		"occurred_at": now.Format(time.RFC3339Nano),
		"person":      events.Person{ID: *id, Email: *email, Status: status, Department: *dept},
	})
	if err != nil {
		return err
	}
	wid := *eventID
	if wid == "" {
		wid = "msg_sample_" + randomID() + randomID()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(base, "/")+"/hooks/generic", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("webhook-id", wid)
	req.Header.Set("webhook-timestamp", fmt.Sprint(now.Unix()))
	req.Header.Set("webhook-signature", signature.Sign(key, wid, time.Unix(now.Unix(), 0), body))
	resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("send-sample: is `jml run` running? %w", err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if *asJSON {
		var answer any
		if json.Unmarshal(out, &answer) != nil {
			answer = strings.TrimSpace(string(out))
		}
		if err := printJSON(stdout, map[string]any{"url": strings.TrimRight(base, "/") + "/hooks/generic", "webhook_id": wid,
			"status": resp.StatusCode, "answer": answer}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "POST %s/hooks/generic webhook-id=%s → %s %s\n", strings.TrimRight(base, "/"), wid, resp.Status, strings.TrimSpace(string(out)))
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("send-sample: %s refused the signature made with the secret %s: that receiver uses another secret. "+
			"Run send-sample with the JML_DATA_DIR of the `jml run` you are talking to (its banner names it), "+
			"or set JML_SOURCE_GENERIC_SECRET to the secret that receiver is configured with", base, from)
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("send-sample: %s has no generic source (404): it is not a sentry-jml receiver, or JML_SOURCE_GENERIC_SECRET is not set there", base)
	case resp.StatusCode != http.StatusAccepted:
		return fmt.Errorf("send-sample: receiver answered %s", resp.Status)
	}
	return nil
}

// sampleSecret finds the generic secret of the instance send-sample talks to:
// JML_SOURCE_GENERIC_SECRET, else the one `jml run` generated into the data
// dir. It never creates one: a new secret would only earn a 401.
func sampleSecret(cfg config.Common) (secret, from string, err error) {
	if cfg.GenericSecret != "" {
		return cfg.GenericSecret, "from JML_SOURCE_GENERIC_SECRET", nil
	}
	path := filepath.Join(cfg.DataDir, genericSecretFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		abs, _ := filepath.Abs(cfg.DataDir)
		return "", "", fmt.Errorf("send-sample: no generic secret in %s (JML_DATA_DIR=%s): `jml run` writes it there at start. "+
			"Run send-sample with the JML_DATA_DIR of the running `jml run` (its banner names it), or set JML_SOURCE_GENERIC_SECRET", path, abs)
	case err != nil:
		return "", "", fmt.Errorf("send-sample: the generic secret: %w", err)
	}
	secret = strings.TrimSpace(string(b))
	if secret == "" {
		return "", "", fmt.Errorf("send-sample: %s is empty", path)
	}
	return secret, "in " + path, nil
}

// sampleAddr is the receiver to send to: JML_HTTP_ADDR when set, else the
// address the `jml run` of this data dir listens on, else the default.
func sampleAddr(cfg config.Common) string {
	if _, set := os.LookupEnv("JML_HTTP_ADDR"); set {
		return cfg.HTTPAddr
	}
	if b, err := os.ReadFile(filepath.Join(cfg.DataDir, httpAddrFile)); err == nil && strings.TrimSpace(string(b)) != "" {
		return strings.TrimSpace(string(b))
	}
	return cfg.HTTPAddr
}
