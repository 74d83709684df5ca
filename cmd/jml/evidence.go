package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/evidence"
)

// parseWhen reads an RFC 3339 time or a date (midnight UTC).
func parseWhen(flagName, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--%s: %q is neither an RFC 3339 time nor a date (2006-01-02)", flagName, s)
}

// outFile is stdout, or FILE when --out is set (created 0600, replaced).
func outFile(path string, stdout io.Writer) (io.Writer, func() error, error) {
	if path == "" || path == "-" {
		return stdout, func() error { return nil }, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, nil, err
	}
	return f, f.Close, nil
}

// stream GETs path and copies the answer to w (no timeout but ctx's: an
// export of a year's records may take a while).
func (c *adminClient) stream(ctx context.Context, path string, q url.Values, w io.Writer) error {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		return fmt.Errorf("admin API at %s: %w (is `jml run` or the worker running with the same JML_ADMIN_ADDR?)", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e struct{ Error string }
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, e.Error)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

func cmdEvidenceExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("evidence export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fromS := fs.String("from", "", "first record time, RFC 3339 or a date (inclusive; empty: the first record)")
	toS := fs.String("to", "", "end time, RFC 3339 or a date (exclusive; empty: now)")
	out := fs.String("out", "", "write to FILE instead of stdout")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	from, err := parseWhen("from", *fromS)
	if err != nil {
		return err
	}
	to, err := parseWhen("to", *toS)
	if err != nil {
		return err
	}
	q := url.Values{}
	if !from.IsZero() {
		q.Set("from", from.Format(time.RFC3339))
	}
	if !to.IsZero() {
		q.Set("to", to.Format(time.RFC3339))
	}
	c, err := newAdminClient()
	if err != nil {
		return err
	}
	w, closeOut, err := outFile(*out, stdout)
	if err != nil {
		return err
	}
	err = c.stream(ctx, "/v1/evidence/export", q, w)
	if cerr := closeOut(); err == nil {
		err = cerr
	}
	return err
}

// trustedKeys reads --key (base64, PEM, or @FILE; repeatable as a comma
// list), else asks the running instance (an auditor pins the key instead).
func trustedKeys(ctx context.Context, flagVal string) ([]ed25519.PublicKey, string, error) {
	if flagVal != "" {
		var keys []ed25519.PublicKey
		for _, v := range strings.Split(flagVal, ",") {
			if name, ok := strings.CutPrefix(v, "@"); ok {
				b, err := os.ReadFile(name)
				if err != nil {
					return nil, "", fmt.Errorf("--key: %w", err)
				}
				v = string(b)
			}
			k, err := evidence.ParsePublicKey(v)
			if err != nil {
				return nil, "", fmt.Errorf("--key: %w", err)
			}
			keys = append(keys, k)
		}
		return keys, "--key", nil
	}
	c, err := newAdminClient()
	if err != nil {
		return nil, "", err
	}
	var v struct {
		PublicKey string `json:"public_key"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/evidence/key", nil, &v); err != nil {
		return nil, "", err
	}
	k, err := evidence.ParsePublicKey(v.PublicKey)
	if err != nil {
		return nil, "", fmt.Errorf("the instance's public key: %w", err)
	}
	return []ed25519.PublicKey{k}, "the running instance (pin it with --key for an audit)", nil
}

func cmdEvidenceVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("evidence verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keyFlag := fs.String("key", "", "trusted public key(s): base64, PEM, or @FILE, comma separated (default: ask the running instance)")
	// Flags may follow the file name.
	var file string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		file, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if file == "" && fs.NArg() > 0 {
		file = fs.Arg(0)
	}
	keys, keySource, err := trustedKeys(ctx, *keyFlag)
	if err != nil {
		return err
	}
	var in io.Reader
	source := file
	if file == "" {
		// The live chain: export all of it (which signs its head) and check
		// the export like any file.
		c, err := newAdminClient()
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		if err := c.stream(ctx, "/v1/evidence/export", nil, &buf); err != nil {
			return err
		}
		in, source = &buf, "the live evidence log"
	} else {
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	res, err := evidence.Verify(in, keys)
	if err != nil {
		return fmt.Errorf("%s: %w", source, err)
	}
	return printJSON(stdout, map[string]any{"verified": true, "source": source, "keys_from": keySource, "result": res})
}

func cmdEvidenceKey(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return simple{name: "evidence key", method: http.MethodGet, path: "/v1/evidence/key"}.leaf()(ctx, args, stdout, stderr)
}

// cmdAccessReviewSign runs `jml access review --sign`: the instance reviews
// and stores the snapshot as an evidence record; the reviewer is the
// operator of the admin token (there is no flag for it).
func cmdAccessReviewSign(ctx context.Context, stdout, stderr io.Writer) error {
	c, err := newAdminClient()
	if err != nil {
		return err
	}
	var v struct {
		Reviewer string            `json:"reviewer"`
		Seq      uint64            `json:"seq"`
		Hash     string            `json:"hash"`
		At       time.Time         `json:"at"`
		Members  []json.RawMessage `json:"members"`
	}
	raw, _, err := longCall(ctx, c, http.MethodPost, "/v1/access/review/sign", nil, nil, "", false, stderr)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("access review --sign: %w", err)
	}
	return printJSON(stdout, map[string]any{"signed": true, "reviewer": v.Reviewer, "evidence_seq": v.Seq, "evidence_hash": v.Hash,
		"at": v.At, "members": len(v.Members)})
}
