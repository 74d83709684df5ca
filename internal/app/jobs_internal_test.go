package app

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// jobsServer serves the job routes and one long route, /v1/long, whose job
// runs fn.
func jobsServer(t *testing.T, js *jobs, fn func(context.Context) (any, error)) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	handle := func(pattern string, f func(*http.Request) (any, error)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			v, err := f(r)
			switch {
			case errors.Is(err, errConflict):
				writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
			case err != nil:
				writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
			default:
				writeJSON(w, http.StatusOK, v)
			}
		})
	}
	js.routes(handle, func(context.Context, string, ...any) {})
	handle("POST /v1/long", func(r *http.Request) (any, error) {
		n := int64(0)
		return js.start(context.WithoutCancel(r.Context()), "long", "alice", "", func() JobProgress {
			return JobProgress{Done: map[string]int64{"items": n}}
		}, fn).answer(r)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func call(t *testing.T, method, url string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return resp.StatusCode, v
}

// TestJobOutlivesItsRequestAndCancels: a long route answers with its job
// once the request's wait is over; the job goes on after the request, is
// listed, and Cancel ends it as "cancelled" through its context.
func TestJobOutlivesItsRequestAndCancels(t *testing.T) {
	js := newJobs()
	started := make(chan struct{})
	srv := jobsServer(t, js, func(ctx context.Context) (any, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	code, v := call(t, http.MethodPost, srv.URL+"/v1/long?wait=50ms")
	if code != http.StatusOK || v["status"] != "running" || v["state"] != JobRunning || v["operator"] != "alice" {
		t.Fatalf("first answer %d %v", code, v)
	}
	<-started
	id := v["job_id"].(string)
	time.Sleep(100 * time.Millisecond) // the request is long over
	if _, v := call(t, http.MethodGet, srv.URL+"/v1/jobs/"+id); v["state"] != JobRunning {
		t.Fatalf("job after its request: %v", v)
	}
	if _, v := call(t, http.MethodGet, srv.URL+"/v1/jobs"); len(v["jobs"].([]any)) != 1 {
		t.Fatalf("jobs %v", v)
	}
	if code, v := call(t, http.MethodPost, srv.URL+"/v1/jobs/"+id+"/cancel"); code != http.StatusOK || v["state"] != JobCancelled {
		t.Fatalf("cancel: %d %v", code, v)
	}
	if code, _ := call(t, http.MethodPost, srv.URL+"/v1/jobs/"+id+"/cancel"); code != http.StatusConflict {
		t.Fatalf("cancel twice: %d", code)
	}
	if code, _ := call(t, http.MethodGet, srv.URL+"/v1/jobs/job_nope"); code != http.StatusNotFound {
		t.Fatalf("unknown job: %d", code)
	}
}

// TestJobAnswersItsResultWithinTheWait: a job that ends within the wait is
// answered with its result (the route's answer before jobs), and a failed
// job with its error; the finished job keeps its result for GET.
func TestJobAnswersItsResultWithinTheWait(t *testing.T) {
	js := newJobs()
	srv := jobsServer(t, js, func(context.Context) (any, error) { return map[string]any{"members": 3}, nil })
	code, v := call(t, http.MethodPost, srv.URL+"/v1/long?wait=5s")
	if code != http.StatusOK || v["members"] != float64(3) {
		t.Fatalf("answer %d %v", code, v)
	}
	list := js.list()
	if len(list) != 1 || list[0].State != JobSucceeded {
		t.Fatalf("jobs %v", list)
	}
	if _, v := call(t, http.MethodGet, srv.URL+"/v1/jobs/"+list[0].ID); v["result"].(map[string]any)["members"] != float64(3) {
		t.Fatalf("finished job %v", v)
	}
	js2 := newJobs()
	srv2 := jobsServer(t, js2, func(context.Context) (any, error) { return nil, &conflict{"busy"} })
	if code, v := call(t, http.MethodPost, srv2.URL+"/v1/long?wait=5s"); code != http.StatusConflict || v["error"] != "busy" {
		t.Fatalf("failed job answer %d %v", code, v)
	}
}

// TestJobsPruneFinished: finished jobs older than jobKeep are dropped;
// running ones stay whatever their age.
func TestJobsPruneFinished(t *testing.T) {
	js := newJobs()
	now := time.Now()
	js.now = func() time.Time { return now }
	block := make(chan struct{})
	defer close(block)
	running := js.start(context.Background(), "slow", "a", "", nil, func(context.Context) (any, error) { <-block; return nil, nil })
	done := js.start(context.Background(), "quick", "a", "", nil, func(context.Context) (any, error) { return 1, nil })
	<-done.finished
	now = now.Add(jobKeep + time.Minute)
	js.start(context.Background(), "next", "a", "", nil, func(context.Context) (any, error) { return nil, nil })
	if _, err := js.get(done.view.ID); err == nil {
		t.Fatal("an old finished job was kept")
	}
	if _, err := js.get(running.view.ID); err != nil {
		t.Fatal("a running job was dropped")
	}
}
