package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/fleetrun/fleetrun/api"
)

// Options shape a benchmark run.
type Options struct {
	Workers  int
	Duration time.Duration
	// Script is the scriptUrl of the submitted tasks, one device each.
	Script string
	Token  string
}

// Fleetrun measures POST /tasks and then GET /tasks/{id} against the server at endpoint. It
// returns the figures and the size of one status response body, for the baseline.
func Fleetrun(ctx context.Context, endpoint string, o Options) (submit, status Figures, statusBody []byte, err error) {
	client := newClient(o.Workers)
	var ids []string
	body := func(i int) []byte {
		b, _ := json.Marshal(api.SubmitRequest{DeviceIDs: []string{fmt.Sprintf("bench-%d", i)}, ScriptURL: o.Script})
		return b
	}
	submit = Run(ctx, "fleetrun POST /tasks", client, o.Workers, o.Duration, http.StatusAccepted,
		func(ctx context.Context, i int) (*http.Request, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint+"/tasks", bytes.NewReader(body(i)))
			if err != nil {
				return nil, err
			}
			req.Header.Set("Content-Type", api.MediaJSON)
			auth(req, o.Token)
			return req, nil
		})
	// Collect ids for the status phase from the list, so the submit phase measured only submits.
	for page := endpoint + "/tasks?limit=1000"; page != "" && len(ids) < 10000; {
		var list api.TaskList
		if err := getJSON(ctx, client, page, o.Token, &list); err != nil {
			return submit, status, nil, err
		}
		for _, t := range list.Items {
			ids = append(ids, t.ID)
		}
		page = list.Next
	}
	if len(ids) == 0 {
		return submit, status, nil, fmt.Errorf("no task was accepted (%d requests, %d errors)", submit.Requests, submit.Errors)
	}
	statusBody, err = fetch(ctx, client, endpoint+"/tasks/"+ids[0], o.Token)
	if err != nil {
		return submit, status, nil, err
	}
	status = Run(ctx, "fleetrun GET /tasks/{id}", client, o.Workers, o.Duration, http.StatusOK,
		func(ctx context.Context, i int) (*http.Request, error) {
			id := ids[i%len(ids)]
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/tasks/"+id, nil)
			auth(req, o.Token)
			return req, err
		})
	return submit, status, statusBody, nil
}

// Baseline measures a bare net/http server on loopback that answers a POST with a 202 and a GET
// with a 200, each with a JSON body of the same size as fleetrun's: the ceiling on this machine.
func Baseline(ctx context.Context, body []byte, o Options) (submit, status Figures) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", api.MediaJSON)
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusAccepted)
		}
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	client := newClient(o.Workers)
	payload, _ := json.Marshal(api.SubmitRequest{DeviceIDs: []string{"bench-0"}, ScriptURL: o.Script})
	submit = Run(ctx, "bare net/http POST", client, o.Workers, o.Duration, http.StatusAccepted,
		func(ctx context.Context, i int) (*http.Request, error) {
			return http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/tasks", bytes.NewReader(payload))
		})
	status = Run(ctx, "bare net/http GET", client, o.Workers, o.Duration, http.StatusOK,
		func(ctx context.Context, i int) (*http.Request, error) {
			return http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/tasks/x", nil)
		})
	return submit, status
}

func newClient(workers int) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: workers * 2, MaxIdleConnsPerHost: workers * 2}}
}

func auth(req *http.Request, token string) {
	if req != nil && token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
}

func fetch(ctx context.Context, client *http.Client, url, token string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	auth(req, token)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	return b, nil
}

func getJSON(ctx context.Context, client *http.Client, url, token string, v any) error {
	b, err := fetch(ctx, client, url, token)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
