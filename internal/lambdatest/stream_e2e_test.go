package lambdatest_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/clocktest"
	"github.com/fleetrun/fleetrun/internal/lambdatest"
)

// delimiter separates the JSON prelude of a streamed response from its body.
var delimiter = make([]byte, 8)

// streamed invokes the status function with ev on the streamed route, as API Gateway invokes
// a RESPONSE_STREAM integration (the same proxy event, the integration reading what the
// function writes as it writes it), and returns the prelude's status and headers and the
// body. The emulator hands back everything the function wrote once the invocation ends.
func streamed(t *testing.T, raw []byte) (status int, headers map[string]string, body string) {
	t.Helper()
	prelude, rest, ok := bytes.Cut(raw, delimiter)
	var meta struct {
		StatusCode int               `json:"statusCode"`
		Headers    map[string]string `json:"headers"`
	}
	dec := json.NewDecoder(bytes.NewReader(prelude))
	dec.DisallowUnknownFields()
	if !ok || dec.Decode(&meta) != nil || dec.More() {
		t.Fatalf("the stream does not start with a JSON prelude and eight NUL bytes: %q", raw)
	}
	return meta.StatusCode, meta.Headers, string(rest)
}

// streamEvent is events/status-events.json pointed at task id, with the Last-Event-ID last
// ("" for none).
func streamEvent(t *testing.T, id, last string) []byte {
	t.Helper()
	ev := route(apiEvent(t, "status-events.json"), "/tasks/{id}/events", "/tasks/"+id+"/events")
	delete(ev.Headers, "Last-Event-ID")
	delete(ev.MultiValueHeaders, "Last-Event-ID")
	if last != "" {
		setHeader(&ev, "Last-Event-ID", last)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// finishedStream reads the event stream of a finished task through the status function and
// compares it with what it must be, byte for byte: the prelude (200, the event stream's
// headers), the delimiter, the reconnection time, the task's final state as GET /tasks/{id}
// renders it, and the closing comment with the reconnection time again.
func finishedStream(t *testing.T, statusFn *lambdatest.Emulator, done api.Task) {
	t.Helper()
	raw, err := statusFn.Invoke(t.Context(), streamEvent(t, done.ID, ""))
	if err != nil {
		t.Fatal(err)
	}
	get := call(t, statusFn, forTask(apiEvent(t, "status.json"), done.ID), nil)
	_, headers, _ := streamed(t, raw)
	want := `{"statusCode":200,"headers":{"Cache-Control":"no-cache","Content-Type":"text/event-stream","X-Request-Id":"` +
		headers[api.HeaderRequestID] + `"}}` +
		string(delimiter) +
		"retry: 1000\n\n" +
		"id: " + strconv.FormatInt(done.Version, 10) + "\nevent: task\ndata: " + strings.TrimSuffix(get.Body, "\n") + "\n\n" +
		": the task has ended\nretry: 1000\n\n"
	if string(raw) != want {
		t.Errorf("the stream of the finished task is\n%q\nwant\n%q", raw, want)
	}
}

// sseBlock is one block of an event stream.
type sseBlock struct {
	id, event, data, comment, retry string
}

// sseBlocks splits a stream body into its blocks.
func sseBlocks(body string) []sseBlock {
	var out []sseBlock
	for text := range strings.SplitSeq(strings.TrimSuffix(body, "\n\n"), "\n\n") {
		var b sseBlock
		for line := range strings.SplitSeq(text, "\n") {
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "":
				b.comment = value
			case "id":
				b.id = value
			case "event":
				b.event = value
			case "data":
				b.data += value
			case "retry":
				b.retry = value
			}
		}
		out = append(out, b)
	}
	return out
}

// liveStream follows a running task's event stream through the status function while change
// — the writes of other functions — moves it to a terminal state, and checks what was
// streamed: the prelude and delimiter, the reconnection time, frames of the versions after the
// one the client had (Last-Event-ID), in order and ending in the terminal state, keep-alive
// comments while the task was idle, and the closing comment with the reconnection time. The
// status function's keep-alive interval is 1 s (EVENT_STREAM_KEEPALIVE), and it logs what it
// sends (LOG_LEVEL debug): change may wait, with sent, until the stream has sent a version.
func liveStream(t *testing.T, statusFn *lambdatest.Emulator, tk api.Task, change func(sent func(version int64))) []api.Task {
	t.Helper()
	type result struct {
		raw []byte
		err error
	}
	done := make(chan result, 1)
	invocation := "stream-" + tk.ID
	began := time.Now()
	go func() {
		raw, err := statusFn.InvokeAs(t.Context(), invocation, streamEvent(t, tk.ID, strconv.FormatInt(tk.Version, 10)))
		done <- result{raw, err}
	}()
	// logged waits for a line of the stream's invocation with every one of parts.
	logged := func(parts ...string) func() error {
		parts = append(parts, `"aws_request_id":"`+invocation+`"`)
		return func() error {
			for line := range strings.SplitSeq(statusFn.Logs(), "\n") {
				if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) }) {
					return nil
				}
			}
			return fmt.Errorf("the stream of %s has not logged %s", tk.ID, parts)
		}
	}
	// The changes come once the stream has read the task and found nothing new for a while: it
	// has said so with a keep-alive.
	clocktest.Eventually(t, 15*time.Second, logged(`"msg":"event stream kept alive"`))
	change(func(version int64) {
		t.Helper()
		clocktest.Eventually(t, 15*time.Second, logged(`"msg":"event stream sent"`, fmt.Sprintf(`"version":%d`, version)))
	})
	var r result
	select {
	case r = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the stream did not end after the task's final state")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	status, headers, body := streamed(t, r.raw)
	if status != 200 || headers["Content-Type"] != api.MediaEventStream || headers["Cache-Control"] != "no-cache" ||
		headers[api.HeaderRequestID] == "" {
		t.Errorf("the prelude: %d %v", status, headers)
	}
	blocks := sseBlocks(body)
	if first := blocks[0]; first != (sseBlock{retry: "1000"}) {
		t.Errorf("the stream opens with %+v, want the reconnection time", first)
	}
	if last := blocks[len(blocks)-1]; last != (sseBlock{comment: "the task has ended", retry: "1000"}) {
		t.Errorf("the stream closes with %+v, want the closing comment and the reconnection time", last)
	}
	var frames []api.Task
	keepAlives := 0
	for _, b := range blocks[1 : len(blocks)-1] {
		switch {
		case b.comment == "keep-alive":
			keepAlives++
		case b.event == "task":
			var got api.Task
			if err := json.Unmarshal([]byte(b.data), &got); err != nil || b.id != strconv.FormatInt(got.Version, 10) {
				t.Fatalf("frame %+v: %v", b, err)
			}
			frames = append(frames, got)
		default:
			t.Errorf("an unexpected block %+v", b)
		}
	}
	versions := []int64{tk.Version}
	for _, f := range frames {
		versions = append(versions, f.Version)
	}
	increasing := slices.IsSortedFunc(versions, func(a, b int64) int { return int(a - b) }) && len(slices.Compact(slices.Clone(versions))) == len(versions)
	if len(frames) == 0 || !increasing || !api.Terminal(frames[len(frames)-1].Status) {
		t.Errorf("frames at versions %v after version %d; want newer versions in order, ending terminal", versions[1:], tk.Version)
	}
	if keepAlives == 0 {
		t.Errorf("no keep-alive in a stream that lasted %v", time.Since(began))
	}
	t.Logf("stream of %s: %d frames (versions %v), %d keep-alives, %d bytes in %v", tk.ID, len(frames), versions[1:], keepAlives,
		len(r.raw), time.Since(began).Round(time.Millisecond))
	return frames
}
