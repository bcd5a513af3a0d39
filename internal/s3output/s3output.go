// Package s3output serves the full output of devices that ran a task through SSM Run Command,
// from the S3 bucket SSM has the managed nodes write it to (ssmrun's Config.OutputBucket). It
// is httpapi's OutputStore on AWS.
//
// Size. API Gateway takes a Lambda function's answer whole, and Lambda bounds a synchronous
// answer at 6 MB (6,291,456 bytes) after encoding; lambdahttp sends a body as text or, when
// that is shorter, in base64, which makes it at most 4/3 of its size. An output of up to
// DefaultInlineLimit (4 MiB, 5.6 MB in base64) is therefore answered as it is; a larger one is
// answered with a presigned URL of the object, valid for DefaultURLLifetime, which httpapi
// sends as 303 See Other. Buffering is not needed: the body is copied from S3 into the
// answer as it arrives.
package s3output

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/fleetrun/fleetrun/internal/httpapi"
	"github.com/fleetrun/fleetrun/internal/task"
)

// Defaults of Options.
const (
	DefaultInlineLimit = 4 << 20
	DefaultURLLifetime = 5 * time.Minute
)

// API is the part of the S3 client the store reads with; *s3.Client satisfies it.
type API interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

// Presigner presigns the URL of a large output; *s3.PresignClient satisfies it.
type Presigner interface {
	PresignGetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.PresignOptions)) (*v4.PresignedHTTPRequest, error)
}

// Options configure a Store. Key is required.
type Options struct {
	// Key returns the S3 key of one stream of the output of device deviceID, run by SSM
	// command commandID of task taskID (ssmrun's Runner.OutputKey).
	Key func(taskID, commandID, deviceID, stream string) string
	// InlineLimit is the largest output, in bytes, answered as it is; DefaultInlineLimit when
	// zero.
	InlineLimit int64
	// URLLifetime is how long the presigned URL of a larger output is valid;
	// DefaultURLLifetime when zero.
	URLLifetime time.Duration
}

// Store reads device output from one bucket. It is safe for concurrent use.
type Store struct {
	api     API
	presign Presigner
	bucket  string
	opts    Options
}

var _ httpapi.OutputStore = (*Store)(nil)

// New returns a Store on bucket.
func New(api API, presign Presigner, bucket string, opts Options) *Store {
	if opts.InlineLimit <= 0 {
		opts.InlineLimit = DefaultInlineLimit
	}
	if opts.URLLifetime <= 0 {
		opts.URLLifetime = DefaultURLLifetime
	}
	return &Store{api: api, presign: presign, bucket: bucket, opts: opts}
}

// OpenOutput implements httpapi.OutputStore. The device's Ref is the SSM command that ran it.
//
// A stream with no object is served from the device's inline copy when that copy is whole
// (not truncated): the agent writes nothing for an empty stream, and nothing at all for a
// device that never ran or is still running. When the inline copy was cut and the object is
// missing (the node may not write to the bucket, or the object has expired), the output is not
// found.
func (s *Store) OpenOutput(ctx context.Context, d *task.Device, stream string) (httpapi.Output, error) {
	inline, cut := d.Stdout, d.StdoutTruncated
	if stream == "stderr" {
		inline, cut = d.Stderr, d.StderrTruncated
	}
	if d.Ref == "" {
		return text(inline), nil
	}
	in := &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.opts.Key(d.TaskID, d.Ref, d.ID, stream))}
	out, err := s.api.GetObject(ctx, in)
	var missing *types.NoSuchKey
	switch {
	case errors.As(err, &missing) && !cut:
		return text(inline), nil
	case errors.As(err, &missing):
		return httpapi.Output{}, task.Errorf(task.CodeNotFound,
			"the full %s of device %s is not in the output bucket: the managed node could not write it there, or it has expired", stream, d.ID)
	case err != nil:
		return httpapi.Output{}, fmt.Errorf("s3output: get %s of %s/%s: %w", stream, d.TaskID, d.ID, err)
	}
	if aws.ToInt64(out.ContentLength) <= s.opts.InlineLimit {
		return httpapi.Output{Body: out.Body}, nil
	}
	out.Body.Close()
	signed, err := s.presign.PresignGetObject(ctx, in, s3.WithPresignExpires(s.opts.URLLifetime))
	if err != nil {
		return httpapi.Output{}, fmt.Errorf("s3output: presign %s of %s/%s: %w", stream, d.TaskID, d.ID, err)
	}
	return httpapi.Output{Redirect: signed.URL}, nil
}

func text(s string) httpapi.Output {
	return httpapi.Output{Body: io.NopCloser(strings.NewReader(s))}
}
