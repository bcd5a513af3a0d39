package s3output_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/fleetrun/fleetrun/internal/awstest"
	"github.com/fleetrun/fleetrun/internal/httpapi"
	"github.com/fleetrun/fleetrun/internal/s3output"
	"github.com/fleetrun/fleetrun/internal/ssmrun"
	"github.com/fleetrun/fleetrun/internal/task"
)

func TestMain(m *testing.M) { awstest.Main(m) }

// TestOpenOutput reads outputs from a bucket on moto laid out as SSM writes them: a small one
// comes back as it is, a large one as a presigned URL that serves the same bytes without any
// other credentials, and a stream the node never wrote falls back to the device's inline copy
// when that copy is whole, and is not found when it was cut.
func TestOpenOutput(t *testing.T) {
	client := s3.NewFromConfig(awstest.Config(t))
	ctx := t.Context()
	bucket := "s3output-" + strings.ToLower(rand.Text()[:10])
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	runner := ssmrun.New(ssmrun.Config{})
	store := s3output.New(client, s3.NewPresignClient(client), bucket, s3output.Options{Key: runner.OutputKey, InlineLimit: 1000})
	put := func(d *task.Device, stream string, body []byte) {
		t.Helper()
		if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket),
			Key: aws.String(runner.OutputKey(d.TaskID, d.Ref, d.ID, stream)), Body: bytes.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
	}
	small := &task.Device{TaskID: "T1", ID: "i-0123456789abcdef0", Ref: "cmd-1", Status: task.DeviceSucceeded,
		Stdout: "ok", StdoutTruncated: false, Stderr: strings.Repeat("e", 10), StderrTruncated: true}
	put(small, "stdout", []byte("ok\n"))
	large := &task.Device{TaskID: "T1", ID: "i-0fedcba9876543210", Ref: "cmd-1", Status: task.DeviceFailed,
		Stdout: strings.Repeat("x", 100), StdoutTruncated: true}
	big := bytes.Repeat([]byte("0123456789\n"), 500)
	put(large, "stdout", big)

	body := func(out httpapi.Output, err error) string {
		t.Helper()
		if err != nil || out.Body == nil {
			t.Fatalf("OpenOutput = %+v, %v; want a body", out, err)
		}
		defer out.Body.Close()
		b, err := io.ReadAll(out.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := body(store.OpenOutput(ctx, small, "stdout")); got != "ok\n" {
		t.Errorf("small stdout = %q", got)
	}

	out, err := store.OpenOutput(ctx, large, "stdout")
	if err != nil || out.Body != nil || !strings.Contains(out.Redirect, "X-Amz-Signature=") || !strings.Contains(out.Redirect, "X-Amz-Expires=300") {
		t.Fatalf("large stdout = %+v, %v; want a presigned URL valid for 300 s", out, err)
	}
	resp, err := http.Get(out.Redirect)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, big) {
		t.Errorf("GET the presigned URL: %d, %d bytes; want 200 and the %d bytes put", resp.StatusCode, len(got), len(big))
	}

	// A stream the node never wrote: the whole inline copy, or not found when it was cut.
	if got := body(store.OpenOutput(ctx, large, "stderr")); got != "" {
		t.Errorf("large stderr = %q, want the empty inline copy", got)
	}
	if _, err := store.OpenOutput(ctx, small, "stderr"); !task.IsCode(err, task.CodeNotFound) {
		t.Errorf("a cut stream the node never wrote: %v, want not found", err)
	}
	// A device no command ran (undeliverable): its inline copy.
	none := &task.Device{TaskID: "T1", ID: "i-0aaaaaaaaaaaaaaaa", Status: task.DeviceUndeliverable}
	if got := body(store.OpenOutput(context.Background(), none, "stdout")); got != "" {
		t.Errorf("undeliverable device's stdout = %q", got)
	}
}
