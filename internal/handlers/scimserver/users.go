package scimserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

func notFound(kind, id string) *scimError {
	return &scimError{Status: http.StatusNotFound, Detail: fmt.Sprintf("%s %s not found", strings.TrimSuffix(kind, "s"), truncate(id))}
}

func nameTaken(kind string) *scimError {
	attr := "userName"
	if kind == kindGroups {
		attr = "displayName"
	}
	return &scimError{Status: http.StatusConflict, SCIMType: "uniqueness", Detail: attr + " already exists"}
}

// load returns the record kind/id (404 when absent).
func (s *Server) load(ctx context.Context, kind, id string) (*record, error) {
	b, err := s.o.Store.Get(ctx, kind, id)
	if errors.Is(err, state.ErrNotFound) {
		return nil, notFound(kind, id)
	}
	if err != nil {
		return nil, err
	}
	rec, err := decodeRecord(b)
	if err != nil {
		return nil, fmt.Errorf("decode %s %s: %w", kind, id, err)
	}
	return rec, nil
}

// publish sends events; the first failure is returned (the caller answers 503
// and the client's retry publishes again under the same ids).
func (s *Server) publish(ctx context.Context, evs []events.Event) error {
	for _, ev := range evs {
		if ev.Person.Email == "" {
			s.o.Logger.WarnContext(ctx, "scim user has no email address; event not published",
				"event_id", ev.ID, "type", ev.Type, "scim_id", ev.Person.Attributes["scim_id"])
			continue
		}
		ev.ID = events.SafeID(ev.ID)
		if err := ev.Check(s.o.Now(), 0); err != nil {
			// Resources are checked when they arrive; this is the last guard
			// before anything of them reaches NATS.
			s.count(ctx, string(ev.Type), "invalid")
			return limit(err)
		}
		res, err := s.o.Publisher.Publish(ctx, ev)
		if err != nil {
			s.count(ctx, string(ev.Type), "unavailable")
			return fmt.Errorf("publish %s: %w", ev.MsgID(), err)
		}
		outcome := "accepted"
		if res.Duplicate {
			outcome = "duplicate"
		}
		s.count(ctx, string(ev.Type), outcome)
		s.o.Logger.InfoContext(ctx, "event accepted", "source", ev.Source, "event_id", ev.ID, "type", ev.Type,
			"person", ev.Person.LogKey(), "seq", res.Sequence, "duplicate", res.Duplicate)
	}
	return nil
}

func (s *Server) writeResource(w http.ResponseWriter, r *http.Request, status int, kind string, rec *record) {
	base := s.baseURL(r)
	w.Header().Set("ETag", etag(rec.Version))
	if status == http.StatusCreated {
		w.Header().Set("Location", base+"/"+kind+"/"+rec.ID)
	}
	writeJSON(w, status, projection(r, rec.render(kind, base)))
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	m, err := decodeObject(body)
	if err != nil {
		return err
	}
	res, err := cleanResource(kindUsers, m)
	if err != nil {
		return err
	}
	ctx := r.Context()
	now := s.o.Now().UTC()
	rec := &record{ID: s.o.NewID(), Resource: res, Version: 1, Created: now, LastModified: now}
	rec.LastEvents = s.userEvents(nil, rec, now)
	_, taken, err := s.o.Store.Update(ctx, kindUsers, rec.ID, func(old []byte) ([]byte, string, error) {
		if old != nil {
			return nil, "", &scimError{Status: http.StatusConflict, SCIMType: "uniqueness", Detail: "id already exists"}
		}
		return rec.encode(), userName(res), nil
	})
	if err != nil {
		return err
	}
	if taken != "" {
		return nameTaken(kindUsers)
	}
	if err := s.publish(ctx, rec.LastEvents); err != nil {
		return err
	}
	s.writeResource(w, r, http.StatusCreated, kindUsers, rec)
	return nil
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request) error {
	rec, err := s.load(r.Context(), kindUsers, r.PathValue("id"))
	if err != nil {
		return err
	}
	s.writeResource(w, r, http.StatusOK, kindUsers, rec)
	return nil
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) error {
	return s.list(w, r, kindUsers, "userName")
}

// list answers GET /Users and GET /Groups with an optional filter. A filter
// that is exactly `<unique attribute> eq "…"` uses the store's name index.
func (s *Server) list(w http.ResponseWriter, r *http.Request, kind, uniqueAttr string) error {
	ctx := r.Context()
	start, count, err := s.listParams(r)
	if err != nil {
		return err
	}
	var f *filterExpr
	if fs := strings.TrimSpace(r.URL.Query().Get("filter")); fs != "" {
		if f, err = parseFilter(fs); err != nil {
			return badRequest("invalidFilter", "%s", err)
		}
	}
	base := s.baseURL(r)
	var all []*record
	if v, ok := f.eqValueOf(uniqueAttr); ok && kind == kindUsers && events.CheckID("", v) != nil {
		// No user can have a userName over the limit: nothing to look up (and
		// nothing of it goes into a KV key).
		writeJSON(w, http.StatusOK, page(nil, start, count))
		return nil
	} else if ok && kind == kindUsers {
		_, b, err := s.o.Store.Lookup(ctx, kind, v)
		switch {
		case errors.Is(err, state.ErrNotFound):
		case err != nil:
			return err
		default:
			rec, err := decodeRecord(b)
			if err != nil {
				return fmt.Errorf("decode %s: %w", kind, err)
			}
			all = append(all, rec)
		}
	} else {
		err := s.o.Store.List(ctx, kind, func(_ string, b []byte) error {
			rec, err := decodeRecord(b)
			if err != nil {
				return fmt.Errorf("decode %s: %w", kind, err)
			}
			if f == nil || f.match(rec.render(kind, base)) {
				all = append(all, rec)
			}
			return nil
		})
		if err != nil {
			return err
		}
		slices.SortFunc(all, func(a, b *record) int {
			if c := a.Created.Compare(b.Created); c != 0 {
				return c
			}
			return strings.Compare(a.ID, b.ID)
		})
	}
	views := make([]map[string]any, 0, len(all))
	for _, rec := range all {
		views = append(views, projection(r, rec.render(kind, base)))
	}
	writeJSON(w, http.StatusOK, page(views, start, count))
	return nil
}

// eqValueOf is eqValue on a possibly nil filter.
func (f *filterExpr) eqValueOf(attr string) (string, bool) {
	if f == nil {
		return "", false
	}
	return f.eqValue(attr)
}

func (s *Server) replaceUser(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	m, err := decodeObject(body)
	if err != nil {
		return err
	}
	res, err := cleanResource(kindUsers, m)
	if err != nil {
		return err
	}
	return s.changeUser(w, r, func(map[string]any) (map[string]any, error) { return res, nil })
}

var userPatcher = &patcher{
	coreSchema: SchemaUser,
	extensions: []string{SchemaEnterpriseUser},
	readOnly:   map[string]bool{"id": true, "meta": true, "groups": true, "schemas": true, "password": true},
}

func (s *Server) patchUser(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	ops, err := parsePatch(body)
	if err != nil {
		return err
	}
	return s.changeUser(w, r, func(cur map[string]any) (map[string]any, error) {
		if err := userPatcher.apply(cur, ops); err != nil {
			return nil, err
		}
		return cleanResource(kindUsers, cur)
	})
}

// changeUser applies change to the stored user under compare-and-set and
// publishes the events of the change; a request that changes nothing publishes
// the events of the last change again (see record.LastEvents).
func (s *Server) changeUser(w http.ResponseWriter, r *http.Request, change func(cur map[string]any) (map[string]any, error)) error {
	ctx := r.Context()
	id := r.PathValue("id")
	var (
		result  *record
		changed bool
	)
	_, taken, err := s.o.Store.Update(ctx, kindUsers, id, func(oldB []byte) ([]byte, string, error) {
		if oldB == nil {
			return nil, "", notFound(kindUsers, id)
		}
		old, err := decodeRecord(oldB)
		if err != nil {
			return nil, "", fmt.Errorf("decode user %s: %w", id, err)
		}
		cur, err := decodeRecord(oldB) // a deep copy to change
		if err != nil {
			return nil, "", fmt.Errorf("decode user %s: %w", id, err)
		}
		res, err := change(cur.Resource)
		if err != nil {
			return nil, "", err
		}
		if err := checkUser(res); err != nil { // a PATCH may set what a POST could not
			return nil, "", err
		}
		if sameResource(old.Resource, res) {
			result, changed = old, false
			return oldB, userName(old.Resource), nil
		}
		now := s.o.Now().UTC()
		next := *old
		next.Resource = res
		next.Version = old.Version + 1
		next.LastModified = now
		next.LastEvents = s.userEvents(old, &next, now)
		result, changed = &next, true
		return next.encode(), userName(res), nil
	})
	if err != nil {
		return err
	}
	if taken != "" {
		return nameTaken(kindUsers)
	}
	if err := s.publish(ctx, result.LastEvents); err != nil {
		return err
	}
	if !changed {
		s.o.Logger.DebugContext(ctx, "scim user unchanged", "scim_id", id)
	}
	s.writeResource(w, r, http.StatusOK, kindUsers, result)
	return nil
}

// deleteUser publishes the leaver first, then removes the user from its groups
// and deletes it: a failure anywhere answers 503 and the retry repeats the same
// steps under the same event id.
func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	id := r.PathValue("id")
	rec, err := s.load(ctx, kindUsers, id)
	if err != nil {
		return err
	}
	now := s.o.Now().UTC()
	gone := *rec
	gone.Version++
	ev := s.newEvent(&gone, events.Leaver, "delete", now)
	ev.Person.Attributes["scim.active"] = "false"
	ev.Person.Attributes["scim.deleted"] = "true"
	if err := s.publish(ctx, []events.Event{ev}); err != nil {
		return err
	}
	for _, g := range rec.Groups {
		if err := s.removeMember(ctx, g.Value, id); err != nil {
			return err
		}
	}
	if _, _, err := s.o.Store.Update(ctx, kindUsers, id, func([]byte) ([]byte, string, error) { return nil, "", nil }); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// removeMember drops user id from group gid's members (no-op when absent).
func (s *Server) removeMember(ctx context.Context, gid, id string) error {
	_, _, err := s.o.Store.Update(ctx, kindGroups, gid, func(b []byte) ([]byte, string, error) {
		if b == nil {
			return nil, "", nil
		}
		g, err := decodeRecord(b)
		if err != nil {
			return nil, "", fmt.Errorf("decode group %s: %w", gid, err)
		}
		ids := memberIDs(g.Resource)
		if !slices.Contains(ids, id) {
			return b, "", nil
		}
		g.Resource["members"] = removeValues(g.Resource[keyOf(g.Resource, "members")].([]any), map[string]any{"value": id})
		g.Version++
		g.LastModified = s.o.Now().UTC()
		g.Touched = nil
		return g.encode(), "", nil
	})
	return err
}
