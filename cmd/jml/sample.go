package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
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
	url := fs.String("url", "", "receiver base URL (default http://$JML_HTTP_ADDR)")
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
	secret, err := genericSecret(cfg)
	if err != nil {
		return err
	}
	secrets := config.Secrets(secret)
	key, err := signature.DecodeStandardSecret(secrets[0])
	if err != nil {
		return fmt.Errorf("generic secret: %w", err)
	}
	base := *url
	if base == "" {
		base = "http://" + cfg.HTTPAddr
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
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("send-sample: receiver answered %s", resp.Status)
	}
	return nil
}
