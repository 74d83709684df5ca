package scimserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/sentry-jml/sentry-jml/internal/events"
)

var groupPatcher = &patcher{
	coreSchema: SchemaGroup,
	readOnly:   map[string]bool{"id": true, "meta": true, "schemas": true},
}

func (s *Server) createGroup(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	m, err := decodeObject(body)
	if err != nil {
		return err
	}
	res, err := cleanResource(kindGroups, m)
	if err != nil {
		return err
	}
	ctx := r.Context()
	now := s.o.Now().UTC()
	rec := &record{ID: s.o.NewID(), Resource: res, Version: 1, Created: now, LastModified: now, Touched: memberIDs(res)}
	if _, _, err := s.o.Store.Update(ctx, kindGroups, rec.ID, func(old []byte) ([]byte, string, error) {
		if old != nil {
			return nil, "", &scimError{Status: http.StatusConflict, SCIMType: "uniqueness", Detail: "id already exists"}
		}
		return rec.encode(), "", nil
	}); err != nil {
		return err
	}
	if err := s.syncUsers(ctx, rec.Touched); err != nil {
		return err
	}
	s.writeResource(w, r, http.StatusCreated, kindGroups, rec)
	return nil
}

func (s *Server) getGroup(w http.ResponseWriter, r *http.Request) error {
	rec, err := s.load(r.Context(), kindGroups, r.PathValue("id"))
	if err != nil {
		return err
	}
	s.writeResource(w, r, http.StatusOK, kindGroups, rec)
	return nil
}

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request) error {
	return s.list(w, r, kindGroups, "displayName")
}

func (s *Server) replaceGroup(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	m, err := decodeObject(body)
	if err != nil {
		return err
	}
	res, err := cleanResource(kindGroups, m)
	if err != nil {
		return err
	}
	rec, err := s.changeGroup(r.Context(), r.PathValue("id"), func(map[string]any) (map[string]any, error) { return res, nil })
	if err != nil {
		return err
	}
	s.writeResource(w, r, http.StatusOK, kindGroups, rec)
	return nil
}

func (s *Server) patchGroup(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	ops, err := parsePatch(body)
	if err != nil {
		return err
	}
	rec, err := s.changeGroup(r.Context(), r.PathValue("id"), func(cur map[string]any) (map[string]any, error) {
		if err := groupPatcher.apply(cur, ops); err != nil {
			return nil, err
		}
		return cleanResource(kindGroups, cur)
	})
	if err != nil {
		return err
	}
	// Okta and Entra both accept 204 for group PATCH; a body is sent only when
	// the client asks for attributes.
	if r.URL.Query().Get("attributes") != "" {
		s.writeResource(w, r, http.StatusOK, kindGroups, rec)
		return nil
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// changeGroup applies change under compare-and-set, then brings the group lists
// of the users it affects up to date (each such user gets an update event with
// its full group list).
func (s *Server) changeGroup(ctx context.Context, id string, change func(cur map[string]any) (map[string]any, error)) (*record, error) {
	var result *record
	_, _, err := s.o.Store.Update(ctx, kindGroups, id, func(oldB []byte) ([]byte, string, error) {
		if oldB == nil {
			return nil, "", notFound(kindGroups, id)
		}
		old, err := decodeRecord(oldB)
		if err != nil {
			return nil, "", fmt.Errorf("decode group %s: %w", id, err)
		}
		cur, err := decodeRecord(oldB)
		if err != nil {
			return nil, "", fmt.Errorf("decode group %s: %w", id, err)
		}
		res, err := change(cur.Resource)
		if err != nil {
			return nil, "", err
		}
		if sameResource(old.Resource, res) {
			result = old
			return oldB, "", nil
		}
		next := *old
		next.Resource = res
		next.Version = old.Version + 1
		next.LastModified = s.o.Now().UTC()
		next.Touched = touched(old.Resource, res)
		result = &next
		return next.encode(), "", nil
	})
	if err != nil {
		return nil, err
	}
	if err := s.syncUsers(ctx, result.Touched); err != nil {
		return nil, err
	}
	return result, nil
}

// touched lists the users whose group list changes from old to new: the
// symmetric difference of the member sets, or every member when the name changed.
func touched(old, new map[string]any) []string {
	a, b := memberIDs(old), memberIDs(new)
	if displayName(old) != displayName(new) {
		return union(a, b)
	}
	var out []string
	for _, id := range a {
		if !slices.Contains(b, id) {
			out = append(out, id)
		}
	}
	for _, id := range b {
		if !slices.Contains(a, id) {
			out = append(out, id)
		}
	}
	return out
}

func union(a, b []string) []string {
	out := append([]string(nil), a...)
	for _, id := range b {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

func (s *Server) deleteGroup(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	id := r.PathValue("id")
	rec, err := s.load(ctx, kindGroups, id)
	if err != nil {
		return err
	}
	if _, _, err := s.o.Store.Update(ctx, kindGroups, id, func([]byte) ([]byte, string, error) { return nil, "", nil }); err != nil {
		return err
	}
	if err := s.syncUsers(ctx, memberIDs(rec.Resource)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// syncUsers recomputes the group list of each user from the stored groups,
// writes it under compare-and-set and publishes an update carrying the user's
// full group list when it changed (and the user's last events again when it
// did not, in case a crash or failed publish lost them). Unknown ids (members
// that were never provisioned to us) are skipped.
func (s *Server) syncUsers(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	want := make(map[string][]groupRef, len(ids))
	for _, id := range ids {
		want[id] = []groupRef{}
	}
	if err := s.o.Store.List(ctx, kindGroups, func(gid string, b []byte) error {
		g, err := decodeRecord(b)
		if err != nil {
			return fmt.Errorf("decode group %s: %w", gid, err)
		}
		for _, uid := range memberIDs(g.Resource) {
			if refs, ok := want[uid]; ok {
				want[uid] = append(refs, groupRef{Value: g.ID, Display: displayName(g.Resource)})
			}
		}
		return nil
	}); err != nil {
		return err
	}
	var errs []error
	for _, uid := range ids {
		refs := want[uid]
		slices.SortFunc(refs, func(a, b groupRef) int {
			if c := strings.Compare(a.Display, b.Display); c != 0 {
				return c
			}
			return strings.Compare(a.Value, b.Value)
		})
		var evs []events.Event
		_, _, err := s.o.Store.Update(ctx, kindUsers, uid, func(oldB []byte) ([]byte, string, error) {
			evs = nil
			if oldB == nil {
				return nil, "", nil
			}
			old, err := decodeRecord(oldB)
			if err != nil {
				return nil, "", fmt.Errorf("decode user %s: %w", uid, err)
			}
			if slices.Equal(old.Groups, refs) {
				evs = old.LastEvents
				return oldB, userName(old.Resource), nil
			}
			now := s.o.Now().UTC()
			next := *old
			next.Groups = refs
			next.Version = old.Version + 1
			next.LastModified = now
			next.LastEvents = s.userEvents(old, &next, now)
			evs = next.LastEvents
			return next.encode(), userName(next.Resource), nil
		})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := s.publish(ctx, evs); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
