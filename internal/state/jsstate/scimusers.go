package jsstate

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/internal/state"
)

// BucketSCIM is the KV bucket holding the resources pushed to the inbound SCIM
// service provider (internal/handlers/scimserver).
const BucketSCIM = "JML_SCIM"

// SCIMStore keeps SCIM resources as opaque JSON documents, one key per resource,
// grouped by kind ("Users", "Groups"), with an optional unique name per resource
// (userName for Users) kept in a case-insensitive index.
//
// Keys: "<kind>.d.<b64(id)>" hold {"name":…,"data":…}; "<kind>.n.<b64(lower(name))>"
// hold the id that owns the name. Writes are compare-and-set on the document key.
// The index is claimed before the document is written and released after, so a
// crash can leave a stale index entry; stale entries (pointing at a missing
// document or one with another name) are ignored by lookups and taken over by
// the next writer of that name.
type SCIMStore struct {
	kv jetstream.KeyValue
	st jetstream.Stream
}

// OpenSCIM creates (or opens) the JML_SCIM bucket.
func OpenSCIM(ctx context.Context, js jetstream.JetStream, o Options) (*SCIMStore, error) {
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	storage := jetstream.FileStorage
	if o.Memory {
		storage = jetstream.MemoryStorage
	}
	kv, st, err := openKV(ctx, js, jetstream.KeyValueConfig{
		Bucket:      BucketSCIM,
		Description: "sentry-jml resources pushed by IdPs to the inbound SCIM server",
		History:     5,
		Storage:     storage,
		Replicas:    o.Replicas,
	})
	if err != nil {
		return nil, err
	}
	return &SCIMStore{kv: kv, st: st}, nil
}

// scimEntry is the stored value of a document key.
type scimEntry struct {
	Name string          `json:"name,omitempty"`
	Data json.RawMessage `json:"data"`
}

var validKind = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]{0,31}$`)

func scimDocKey(kind, id string) string {
	return kind + ".d." + base64.RawURLEncoding.EncodeToString([]byte(id))
}

func scimNameKey(kind, name string) string {
	return kind + ".n." + base64.RawURLEncoding.EncodeToString([]byte(strings.ToLower(name)))
}

func checkKind(kind string) error {
	if !validKind.MatchString(kind) {
		return fmt.Errorf("scim store: invalid kind %q", kind)
	}
	return nil
}

// Get returns the document kind/id, or an error wrapping state.ErrNotFound.
func (s *SCIMStore) Get(ctx context.Context, kind, id string) ([]byte, error) {
	e, _, err := s.get(ctx, kind, id)
	if err != nil {
		return nil, err
	}
	return e.Data, nil
}

func (s *SCIMStore) get(ctx context.Context, kind, id string) (scimEntry, uint64, error) {
	if err := checkKind(kind); err != nil {
		return scimEntry{}, 0, err
	}
	if id == "" {
		return scimEntry{}, 0, fmt.Errorf("scim %s %q: %w", kind, id, state.ErrNotFound)
	}
	kve, err := s.kv.Get(ctx, scimDocKey(kind, id))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return scimEntry{}, 0, fmt.Errorf("scim %s %s: %w", kind, id, state.ErrNotFound)
	}
	if err != nil {
		return scimEntry{}, 0, fmt.Errorf("scim get %s %s: %w", kind, id, err)
	}
	var e scimEntry
	if err := json.Unmarshal(kve.Value(), &e); err != nil {
		return scimEntry{}, 0, fmt.Errorf("scim decode %s %s: %w", kind, id, err)
	}
	return e, kve.Revision(), nil
}

// Lookup returns the id and document whose name equals name (case-insensitive),
// or an error wrapping state.ErrNotFound.
func (s *SCIMStore) Lookup(ctx context.Context, kind, name string) (string, []byte, error) {
	if err := checkKind(kind); err != nil {
		return "", nil, err
	}
	id, _, err := s.owner(ctx, kind, name)
	if err != nil {
		return "", nil, err
	}
	if id == "" {
		return "", nil, fmt.Errorf("scim %s name %q: %w", kind, name, state.ErrNotFound)
	}
	e, _, err := s.get(ctx, kind, id)
	if err != nil {
		return "", nil, err
	}
	return id, e.Data, nil
}

// owner returns the live owner of name ("" when the name is free or its index
// entry is stale) and the index entry's revision (0 when absent).
func (s *SCIMStore) owner(ctx context.Context, kind, name string) (string, uint64, error) {
	kve, err := s.kv.Get(ctx, scimNameKey(kind, name))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return "", 0, nil
	}
	if err != nil {
		return "", 0, fmt.Errorf("scim index %s: %w", kind, err)
	}
	id := string(kve.Value())
	e, _, err := s.get(ctx, kind, id)
	if errors.Is(err, state.ErrNotFound) {
		return "", kve.Revision(), nil
	}
	if err != nil {
		return "", 0, err
	}
	if !strings.EqualFold(e.Name, name) {
		return "", kve.Revision(), nil
	}
	return id, kve.Revision(), nil
}

// claim makes id the owner of name. It returns the other live owner, if any,
// without claiming.
func (s *SCIMStore) claim(ctx context.Context, kind, name, id string) (string, error) {
	for attempt := 0; attempt < 50; attempt++ {
		owner, rev, err := s.owner(ctx, kind, name)
		if err != nil {
			return "", err
		}
		if owner == id {
			return "", nil
		}
		if owner != "" {
			return owner, nil
		}
		key := scimNameKey(kind, name)
		if rev == 0 {
			_, err = s.kv.Create(ctx, key, []byte(id))
		} else {
			_, err = s.kv.Update(ctx, key, []byte(id), rev)
		}
		if err == nil {
			return "", nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return "", fmt.Errorf("scim index %s: %w", kind, err)
		}
		if err := ctx.Err(); err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("scim index %s: too much contention", kind)
}

// release drops the index entry of name if it still points at id.
func (s *SCIMStore) release(ctx context.Context, kind, name, id string) error {
	key := scimNameKey(kind, name)
	kve, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("scim index %s: %w", kind, err)
	}
	if string(kve.Value()) != id {
		return nil
	}
	err = s.kv.Delete(ctx, key, jetstream.LastRevision(kve.Revision()))
	if err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("scim index %s: %w", kind, err)
	}
	return nil
}

// List calls fn with every document of kind, in no particular order. An error
// from fn stops the listing and is returned.
func (s *SCIMStore) List(ctx context.Context, kind string, fn func(id string, data []byte) error) error {
	if err := checkKind(kind); err != nil {
		return err
	}
	keys, err := liveKeys(ctx, s.st, BucketSCIM, kind+".d.>")
	if err != nil {
		return fmt.Errorf("scim list %s: %w", kind, err)
	}
	// A key scan lists each key once: no duplicates to skip.
	prefix := kind + ".d."
	for _, k := range keys {
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(k, prefix))
		if err != nil {
			continue
		}
		e, _, err := s.get(ctx, kind, string(raw))
		if errors.Is(err, state.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if err := fn(string(raw), e.Data); err != nil {
			return err
		}
	}
	return nil
}

// Update changes the document kind/id under compare-and-set. fn gets the current
// document (nil when absent) and returns the new one with its unique name ("" for
// none). fn returning nil data deletes the document; returning the old bytes
// unchanged (and the same name) writes nothing. fn may be called again when a
// concurrent write wins; an error from fn aborts and is returned as is.
//
// When the new name belongs to another live document nothing is written and
// takenBy is that document's id. Otherwise Update returns the document as
// stored (nil after a delete).
func (s *SCIMStore) Update(ctx context.Context, kind, id string, fn func(old []byte) (data []byte, name string, err error)) (data []byte, takenBy string, err error) {
	if err := checkKind(kind); err != nil {
		return nil, "", err
	}
	if id == "" {
		return nil, "", fmt.Errorf("scim store: empty id")
	}
	key := scimDocKey(kind, id)
	for attempt := 0; attempt < 50; attempt++ {
		old, rev, err := s.get(ctx, kind, id)
		exists := err == nil
		if err != nil && !errors.Is(err, state.ErrNotFound) {
			return nil, "", err
		}
		var oldData []byte
		if exists {
			oldData = old.Data
		}
		data, name, err := fn(oldData)
		if err != nil {
			return nil, "", err
		}
		if data == nil {
			if !exists {
				return nil, "", nil
			}
			err := s.kv.Delete(ctx, key, jetstream.LastRevision(rev))
			if err == nil {
				if old.Name != "" {
					if err := s.release(ctx, kind, old.Name, id); err != nil {
						return nil, "", err
					}
				}
				return nil, "", nil
			}
			if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) {
				return nil, "", fmt.Errorf("scim delete %s %s: %w", kind, id, err)
			}
			continue
		}
		if exists && bytes.Equal(data, old.Data) && name == old.Name {
			return old.Data, "", nil
		}
		if !json.Valid(data) {
			return nil, "", fmt.Errorf("scim write %s %s: document is not JSON", kind, id)
		}
		if name != "" {
			owner, err := s.claim(ctx, kind, name, id)
			if err != nil {
				return nil, "", err
			}
			if owner != "" {
				return nil, owner, nil
			}
		}
		b, err := json.Marshal(scimEntry{Name: name, Data: data})
		if err != nil {
			return nil, "", fmt.Errorf("scim encode %s %s: %w", kind, id, err)
		}
		if exists {
			_, err = s.kv.Update(ctx, key, b, rev)
		} else {
			_, err = s.kv.Create(ctx, key, b)
		}
		if err == nil {
			if exists && old.Name != "" && !strings.EqualFold(old.Name, name) {
				if err := s.release(ctx, kind, old.Name, id); err != nil {
					return nil, "", err
				}
			}
			return data, "", nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return nil, "", fmt.Errorf("scim write %s %s: %w", kind, id, err)
		}
		if err := ctx.Err(); err != nil {
			return nil, "", err
		}
	}
	return nil, "", fmt.Errorf("scim write %s %s: too much contention", kind, id)
}
