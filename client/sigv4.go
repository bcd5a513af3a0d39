package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// signer signs requests with AWS Signature Version 4, as API Gateway's IAM authorization
// requires.
type signer struct {
	service string
	region  string
	creds   aws.CredentialsProvider
	v4      *v4.Signer
}

func newSigner(service, region string, creds aws.CredentialsProvider) *signer {
	if _, cached := creds.(*aws.CredentialsCache); !cached {
		creds = aws.NewCredentialsCache(creds)
	}
	return &signer{service: service, region: region, creds: creds, v4: v4.NewSigner()}
}

// sign adds X-Amz-Date, Authorization and, for temporary credentials, X-Amz-Security-Token to
// req, whose body is body. Every header already on req is signed, except those the signer
// knows proxies rewrite (User-Agent among them).
func (s *signer) sign(ctx context.Context, req *http.Request, body []byte, at time.Time) error {
	creds, err := s.creds.Retrieve(ctx)
	if err != nil {
		return fmt.Errorf("sigv4: retrieve credentials: %w", err)
	}
	sum := sha256.Sum256(body)
	if err := s.v4.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), s.service, s.region, at.UTC()); err != nil {
		return fmt.Errorf("sigv4: sign %s %s: %w", req.Method, req.URL.Path, err)
	}
	return nil
}
