package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/signature"
)

// sender posts signed generic events and, as the receiver's contract asks of
// every sender, retries until the answer is 202 (503, connection errors and
// timeouts are retried; anything else is recorded as rejected).
type sender struct {
	url    string
	key    []byte
	client *http.Client

	accepted   atomic.Int64 // 202 with accepted:1
	duplicates atomic.Int64 // 202 with duplicates:1
	retries    atomic.Int64 // non-202 answers and transport errors that were retried
	status503  atomic.Int64

	mu       sync.Mutex
	rejected []string          // unexpected answers
	got202   map[string]string // webhook-id → "accepted" | "duplicate"
}

func newSender(url, secret string) (*sender, error) {
	key, err := signature.DecodeStandardSecret(secret)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return &sender{url: url, key: key, got202: map[string]string{},
		client: &http.Client{Timeout: 10 * time.Second, Transport: tr}}, nil
}

// send delivers one item, retrying until 202 or ctx ends.
func (s *sender) send(ctx context.Context, it sendItem) error {
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		status, body, err := s.post(ctx, it)
		if err == nil && status == http.StatusAccepted {
			var r struct{ Accepted, Duplicates int }
			if err := json.Unmarshal(body, &r); err != nil || r.Accepted+r.Duplicates != 1 {
				s.reject(fmt.Sprintf("%s: 202 with body %s", it.ID, body))
				return nil
			}
			s.mu.Lock()
			if r.Accepted == 1 {
				s.accepted.Add(1)
				s.got202[it.ID] = "accepted"
			} else {
				s.duplicates.Add(1)
				if _, ok := s.got202[it.ID]; !ok {
					s.got202[it.ID] = "duplicate"
				}
			}
			s.mu.Unlock()
			return nil
		}
		if err == nil && status != http.StatusServiceUnavailable && status != http.StatusBadGateway && status != http.StatusGatewayTimeout {
			s.reject(fmt.Sprintf("%s: %d %s", it.ID, status, body))
			return nil
		}
		if status == http.StatusServiceUnavailable {
			s.status503.Add(1)
		}
		s.retries.Add(1)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: gave up after %d attempts: %w (last: %d %v)", it.ID, attempt, ctx.Err(), status, err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

func (s *sender) reject(msg string) {
	s.mu.Lock()
	s.rejected = append(s.rejected, msg)
	s.mu.Unlock()
}

func (s *sender) post(ctx context.Context, it sendItem) (int, []byte, error) {
	now := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(it.Body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("webhook-id", it.ID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("webhook-signature", signature.Sign(s.key, it.ID, time.Unix(now.Unix(), 0), it.Body))
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, b, nil
}

// sendAll delivers items with conc concurrent senders at most rate items per
// second (0 = as fast as the receiver answers), in order per sender slot.
func (s *sender) sendAll(ctx context.Context, items []sendItem, conc int, rate float64) error {
	ch := make(chan sendItem)
	errc := make(chan error, conc)
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range ch {
				if err := s.send(ctx, it); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	start := time.Now()
	var err error
feed:
	for i, it := range items {
		if rate > 0 {
			due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
		}
		select {
		case ch <- it:
		case err = <-errc:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(ch)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errc:
		default:
		}
	}
	return err
}
