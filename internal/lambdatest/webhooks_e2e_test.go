package lambdatest_test

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/lambdatest"
	"github.com/fleetrun/fleetrun/internal/ssmtest"
	"github.com/fleetrun/fleetrun/internal/webhook/webhooktest"
)

// hookDevices are the devices of the task that asks for webhooks; they never finish.
var hookDevices = []string{"i-0bbbbbbbbbbbbbbb1", "i-0bbbbbbbbbbbbbbb2"}

// putWebhookSecret makes a signing secret and stores it in moto's SSM as the SecureString
// parameter name, where WebhookFunction reads it at its cold start, as on AWS.
func putWebhookSecret(t *testing.T, sdk aws.Config, name string) string {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	secret := "whsec_" + base64.StdEncoding.EncodeToString(key)
	_, err := ssm.NewFromConfig(sdk).PutParameter(t.Context(), &ssm.PutParameterInput{Name: aws.String(name),
		Value: aws.String(secret), Type: ssmtypes.ParameterTypeSecureString, Overwrite: aws.Bool(true)})
	if err != nil {
		t.Fatalf("put the webhook secret: %v", err)
	}
	return secret
}

// webhooksAndStreams submits a task that asks for task.started and task.finished to a
// receiver on 127.0.0.1 (allowed in this environment by ALLOW_HTTP_WEBHOOKS, as `fleetrun
// serve --allow-http-webhooks` allows it), and plays the webhook queue's event source mapping
// by hand:
//
//	dispatch → task.started on the webhook queue → WebhookFunction → the receiver answers 503
//	→ the retry, delayed, on the queue → WebhookFunction → 204, and /deliveries lists both;
//
// then follows the task's event stream while the cancel and the executor end it
// (liveStream), and delivers its task.finished. Every request verifies with the secret. A
// notify URL of the metadata service is refused at submit.
func webhooksAndStreams(t *testing.T, fns map[string]*lambdatest.Emulator, q, hooks *queue, srv *ssmtest.Server, secret string) {
	t.Helper()
	submitFn, statusFn, cancelFn := fns["SubmitFunction"], fns["StatusFunction"], fns["CancelFunction"]
	executorFn, webhookFn := fns["ExecutorFunction"], fns["WebhookFunction"]
	for _, d := range hookDevices {
		srv.Script(d, ssmtest.Script{Outcome: ssmtest.Never})
	}
	rc := webhooktest.Start(t, secret, map[string][]int{"/hook": {503, 204}})

	submit := func(notify string) (resp api.Task, status int, body string) {
		ev := apiEvent(t, "submit.json")
		ev.Body = `{"deviceIds":["` + strings.Join(hookDevices, `","`) + `"],"scriptUrl":"s3://` + sampleBucket + `/scripts/patch.sh",` +
			`"notify":` + notify + `}`
		setHeader(&ev, "Idempotency-Key", "webhooks-"+strings.ToLower(rand.Text()[:8]))
		r := call(t, submitFn, ev, nil)
		if r.StatusCode == 202 {
			if err := json.Unmarshal([]byte(r.Body), &resp); err != nil {
				t.Fatal(err)
			}
		}
		return resp, r.StatusCode, r.Body
	}
	if _, status, body := submit(`{"url":"http://169.254.169.254/latest/meta-data/"}`); status != 422 || !strings.Contains(body, "link-local") {
		t.Errorf("notify to the metadata service: %d %s", status, body)
	}
	tk, status, body := submit(`{"url":"` + rc.URL + `/hook","events":["task.started","task.finished"]}`)
	if status != 202 || tk.Request.Notify == nil || tk.Links.Deliveries != tk.Links.Self+"/deliveries" {
		t.Fatalf("submit with notify: %d %s", status, body)
	}
	if failed := execute(t, executorFn, q.next(t, tk.ID, engine.ActionDispatch, 5*time.Second)); len(failed) > 0 {
		t.Fatalf("dispatch failed: %v", failed)
	}

	// task.started: a 503, then its retry, which the receiver takes.
	started := tk.ID + "_started"
	first, job := hooks.nextJob(t, started, 10*time.Second)
	if job.Attempt != 0 || job.Payload == nil {
		t.Fatalf("the first job of %s: %+v", started, job)
	}
	if failed := execute(t, webhookFn, first); len(failed) > 0 {
		t.Fatalf("the first attempt failed to be handled: %v", failed)
	}
	retry, job := hooks.nextJob(t, started, 15*time.Second)
	if job.Attempt != 1 || job.FirstAttemptAt.IsZero() {
		t.Fatalf("the retry of %s: %+v", started, job)
	}
	if failed := execute(t, webhookFn, retry); len(failed) > 0 {
		t.Fatalf("the retry failed to be handled: %v", failed)
	}
	got := rc.Requests("/hook")
	if len(got) != 2 || got[0].ID != started || got[1].ID != started || !got[0].Verified || !got[1].Verified ||
		got[0].Event.Type != api.WebhookTaskStarted || got[0].Event.ID != tk.ID || got[0].Event.Status != api.StatusRunning {
		t.Fatalf("the receiver got %+v; want task.started twice, signed", got)
	}
	var deliveries api.DeliveryList
	if r := call(t, statusFn, route(apiEvent(t, "status.json"), "/tasks/{id}/deliveries", "/tasks/"+tk.ID+"/deliveries"), &deliveries); r.StatusCode != 200 ||
		webhooktest.Outcomes(deliveries.Items) != "1:503:retrying 2:204:delivered" {
		t.Fatalf("GET deliveries: %d %+v", r.StatusCode, deliveries)
	}
	t.Logf("webhook %s: attempt 1 answered 503, attempt 2 %v later answered 204", started, got[1].At.Sub(got[0].At).Round(time.Millisecond))

	// The event stream, while the cancel and the executor end the task.
	frames := liveStream(t, statusFn, getTask(t, statusFn, tk.ID), func(sent func(version int64)) {
		var cancelling api.Task
		if r := call(t, cancelFn, forTask(apiEvent(t, "cancel.json"), tk.ID), &cancelling); r.StatusCode != 202 {
			t.Fatalf("cancel: %d %s", r.StatusCode, r.Body)
		}
		sent(cancelling.Version)
		if failed := execute(t, executorFn, q.next(t, tk.ID, engine.ActionCancel, 5*time.Second)); len(failed) > 0 {
			t.Fatalf("cancel message: %v", failed)
		}
		if failed := execute(t, executorFn, q.next(t, tk.ID, engine.ActionPoll, 30*time.Second)); len(failed) > 0 {
			t.Fatalf("poll after the cancel: %v", failed)
		}
	})
	if len(frames) < 2 || frames[0].Status != api.StatusCancelling || frames[len(frames)-1].Status != api.StatusCancelled {
		t.Errorf("the stream sent %d frames from %s to %s, want cancelling, then cancelled", len(frames), frames[0].Status,
			frames[len(frames)-1].Status)
	}

	// task.finished, queued by the executor with the task's end.
	finished, job := hooks.nextJob(t, tk.ID+"_finished", 10*time.Second)
	if failed := execute(t, webhookFn, finished); len(failed) > 0 {
		t.Fatalf("task.finished failed to be handled: %v", failed)
	}
	got = rc.Requests("/hook")
	if len(got) != 3 || !got[2].Verified || got[2].ID != job.ID || got[2].Event.Type != api.WebhookTaskFinished ||
		got[2].Event.Status != api.StatusCancelled {
		t.Errorf("the receiver's third request: %+v; want task.finished of the cancelled task", got[len(got)-1])
	}
}
