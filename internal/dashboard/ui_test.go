package dashboard_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/chromedp/chromedp"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/cli"
)

// sigv4Gateway stands in for API Gateway with IAM authorization in front of a fleetrun API
// under the stage path /prod: it verifies every request's SigV4 signature with the AWS SDK's
// own signer, answers 403 to a request it cannot verify, and passes the others on.
type sigv4Gateway struct {
	creds              aws.Credentials
	region             string
	proxy              *httputil.ReverseProxy
	verified, rejected atomic.Int64
	lastRejection      atomic.Value
}

const stage = "/prod"

var authRule = regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=[0-9a-f]{64}$`)

func (g *sigv4Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := g.verify(r); err != nil {
		g.rejected.Add(1)
		g.lastRejection.Store(err.Error())
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, `{"message":%q}`, err.Error())
		return
	}
	g.verified.Add(1)
	if !strings.HasPrefix(r.URL.Path, stage+"/") {
		http.NotFound(w, r)
		return
	}
	g.proxy.ServeHTTP(w, r)
}

// verify signs a copy of r, with the headers r says it signed, its body and its time, and
// compares the signature with r's.
func (g *sigv4Gateway) verify(r *http.Request) error {
	auth := r.Header.Get("Authorization")
	m := authRule.FindStringSubmatch(auth)
	if m == nil {
		return fmt.Errorf("no SigV4 Authorization header: %q", auth)
	}
	if m[1] != g.creds.AccessKeyID || m[3] != g.region || m[4] != "execute-api" {
		return fmt.Errorf("signed for %s in %s/%s", m[1], m[3], m[4])
	}
	at, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil || time.Since(at).Abs() > 5*time.Minute {
		return fmt.Errorf("X-Amz-Date %q is missing or not now", r.Header.Get("X-Amz-Date"))
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	again, err := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	for _, h := range strings.Split(m[5], ";") {
		if h != "host" && h != "content-length" {
			again.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(context.Background(), g.creds, again, hex.EncodeToString(sum[:]), "execute-api", g.region, at); err != nil {
		return err
	}
	if again.Header.Get("Authorization") != auth {
		return errors.New("the signature does not match")
	}
	return nil
}

// startUI runs `fleetrun ui` as the binary would, and returns the dashboard's URL.
func startUI(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, pw := io.Pipe()
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Main(ctx, append([]string{"ui", "--addr", "127.0.0.1:0"}, args...), nil, pw, &stderr, os.Getenv)
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("fleetrun ui exited %d: %s", code, stderr.String())
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cancel()
		t.Fatalf("fleetrun ui said %q (%v): %s", line, err, stderr.String())
	}
	go io.Copy(io.Discard, out)
	i := strings.Index(line, " at ")
	if i < 0 {
		t.Fatalf("fleetrun ui said %q", line)
	}
	return strings.TrimSpace(line[i+len(" at "):])
}

func TestUICommandShowsTasksThroughASigV4Gateway(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gatewayURL := "http://" + ln.Addr().String()
	// Links name the gateway's stage, as they do behind API Gateway.
	srv := startServer(t, "", "--public-url", gatewayURL+stage)
	backend, _ := url.Parse(srv.base)
	g := &sigv4Gateway{
		creds:  aws.Credentials{AccessKeyID: "AKIDUITEST", SecretAccessKey: "ui-test-secret", SessionToken: "ui-session-token"},
		region: "eu-west-1",
		proxy: &httputil.ReverseProxy{FlushInterval: -1, Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(backend)
			pr.Out.URL.Path, pr.Out.URL.RawPath = strings.TrimPrefix(pr.In.URL.Path, stage), ""
			pr.Out.Header.Del("Authorization")
		}},
	}
	gateway := &http.Server{Handler: g, ReadHeaderTimeout: 10 * time.Second}
	go gateway.Serve(ln)
	t.Cleanup(func() { gateway.Close() })

	// The standard credential chain finds these, and nothing of this machine's.
	dir := t.TempDir()
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": g.creds.AccessKeyID, "AWS_SECRET_ACCESS_KEY": g.creds.SecretAccessKey,
		"AWS_SESSION_TOKEN": g.creds.SessionToken, "AWS_REGION": "", "AWS_PROFILE": "", "AWS_EC2_METADATA_DISABLED": "true",
		"AWS_CONFIG_FILE": filepath.Join(dir, "config"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
		"FLEETRUN_TOKEN": "", "FLEETRUN_ENDPOINT": ""} {
		t.Setenv(k, v)
	}
	// An unsigned call is refused, as API Gateway refuses it.
	if res, err := http.Get(gatewayURL + stage + "/tasks"); err != nil || res.StatusCode != http.StatusForbidden {
		t.Fatalf("an unsigned call to the gateway: %v %v", res, err)
	}
	g.rejected.Store(0)

	task := srv.submit(t, api.SubmitRequest{DeviceIDs: []string{"web-1", "web-2", "web-3"}, ScriptURL: "flaky.sh"})
	page := startUI(t, "--endpoint", gatewayURL+stage, "--sigv4", "--region", g.region)
	if !strings.HasSuffix(page, stage+"/ui/") {
		t.Fatalf("fleetrun ui serves the dashboard at %s, want it under the stage path", page)
	}
	ui, _ := url.Parse(page)
	tb := newTab(t, "http://"+ui.Host)
	tb.run("open the dashboard", chromedp.Navigate("http://"+ui.Host+"/"))
	tb.waitJS("the redirect to the stage's dashboard and its live list",
		`location.pathname === "`+stage+`/ui/" && document.getElementById("live").dataset.state === "live"`)
	row := fmt.Sprintf(`document.querySelector('tr[data-task="%s"]')`, task.ID)
	tb.waitJS("the task's row, completed", row+`?.dataset.status === "completed"`)
	tb.run("open the task", chromedp.Click(chromedp.CSS(`tr[data-task="`+task.ID+`"] a`)))
	tb.waitJS("the task page and its grid", heading+` === "completed" && document.getElementById("grid").dataset.count === "3"`)
	tb.run("open web-2's output", chromedp.Click(chromedp.CSS(`tr[data-device="web-2"] button`)))
	tb.waitJS("web-2's output, read through the gateway", `document.getElementById("stderr").textContent.includes("disk check failed on web-2")`)

	if g.verified.Load() == 0 || g.rejected.Load() != 0 {
		t.Errorf("the gateway verified %d requests and refused %d (last: %v)", g.verified.Load(), g.rejected.Load(), g.lastRejection.Load())
	}
	// A page of another origin cannot make the relay act with the operator's identity.
	req, _ := http.NewRequest(http.MethodPost, page[:strings.Index(page, stage)]+stage+"/tasks", strings.NewReader(`{}`))
	req.Header.Set("Origin", "http://evil.example")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusForbidden {
		t.Errorf("a cross-site POST through fleetrun ui: %v %v, want 403", res, err)
	}
}
