package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// Packages the Lambda rows build, from the repository's root.
const (
	statusFunction  = "./functions/status"
	minimalFunction = "./internal/lambdatest/testdata/minimal"
	// sizeCeiling is the goal for an arm64 bootstrap.
	sizeCeiling = 10_000_000
)

// lambda is the Lambda rows: StatusFunction's initialisation, from the start of its process
// to its first GET /next of the Runtime API, against the minimal aws-lambda-go function's,
// each built for this machine and started o.starts times in turn (the median counts); and
// StatusFunction's stripped arm64 bootstrap against 10 MB.
func (b *bench) lambda(ctx context.Context) error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	bins := map[string]string{}
	for _, pkg := range []string{statusFunction, minimalFunction} {
		for _, arch := range []string{runtime.GOARCH, "arm64"} {
			out := filepath.Join(b.dir, "lambda", arch, filepath.Base(pkg))
			if err := build(ctx, root, pkg, arch, out); err != nil {
				return err
			}
			bins[pkg+"/"+arch] = out
		}
	}
	api, err := startRuntimeAPI()
	if err != nil {
		return err
	}
	defer api.close()
	inits := map[string][]time.Duration{}
	for range b.o.starts {
		for _, pkg := range []string{statusFunction, minimalFunction} {
			d, err := api.coldStart(ctx, bins[pkg+"/"+runtime.GOARCH])
			if err != nil {
				return fmt.Errorf("%s: %w", pkg, err)
			}
			inits[pkg] = append(inits[pkg], d)
		}
	}
	mine, ceiling := median(inits[statusFunction]), median(inits[minimalFunction])
	fmt.Printf("%-28s %9s   (median of %d; %s to %s)\n", "StatusFunction init", mine.Round(10*time.Microsecond), b.o.starts,
		slices.Min(inits[statusFunction]).Round(10*time.Microsecond), slices.Max(inits[statusFunction]).Round(10*time.Microsecond))
	fmt.Printf("%-28s %9s   (median of %d)\n", "minimal aws-lambda-go init", ceiling.Round(10*time.Microsecond), b.o.starts)
	b.rows = append(b.rows, row{what: "Lambda init, bootstrap start → first /next", mine: mine.Round(10 * time.Microsecond).String(),
		ceiling: "minimal aws-lambda-go " + ceiling.Round(10*time.Microsecond).String(), ratio: float64(mine) / float64(ceiling), goal: "≤ 2x"})

	size, err := fileSize(bins[statusFunction+"/arm64"])
	if err != nil {
		return err
	}
	minimal, err := fileSize(bins[minimalFunction+"/arm64"])
	if err != nil {
		return err
	}
	fmt.Printf("%-28s %9.1f MB (minimal aws-lambda-go: %.1f MB)\n", "StatusFunction arm64", float64(size)/1e6, float64(minimal)/1e6)
	b.rows = append(b.rows, row{what: "arm64 bootstrap, StatusFunction", mine: fmt.Sprintf("%.1f MB", float64(size)/1e6),
		ceiling: "10 MB", ratio: float64(size) / sizeCeiling, goal: "≤ 1x"})
	return nil
}

// build builds a function as the Makefile's LAMBDA_BUILD does, for arch.
func build(ctx context.Context, root, pkg, arch, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", "lambda.norpc", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s for %s: %v\n%s", pkg, arch, err, b)
	}
	return nil
}

// runtimeAPI is the part of Lambda's Runtime API a cold start reaches first: it notes when a
// bootstrap first asks for the next invocation, and keeps it waiting.
type runtimeAPI struct {
	srv  *http.Server
	addr string
	mu   sync.Mutex
	next chan time.Time
}

func startRuntimeAPI() (*runtimeAPI, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := &runtimeAPI{addr: l.Addr().String()}
	a.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/runtime/invocation/next") {
			at := time.Now()
			a.mu.Lock()
			select {
			case a.next <- at:
			default:
			}
			a.mu.Unlock()
			<-r.Context().Done()
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})}
	go func() { _ = a.srv.Serve(l) }()
	return a, nil
}

func (a *runtimeAPI) close() { _ = a.srv.Close() }

// coldStart starts bin as Lambda would and returns the time to its first GET /next.
func (a *runtimeAPI) coldStart(ctx context.Context, bin string) (time.Duration, error) {
	next := make(chan time.Time, 1)
	a.mu.Lock()
	a.next = next
	a.mu.Unlock()
	cmd := exec.Command(bin)
	cmd.Env = []string{"AWS_LAMBDA_RUNTIME_API=" + a.addr, "AWS_LAMBDA_FUNCTION_NAME=bench", "AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256", "_HANDLER=bootstrap", "LAMBDA_TASK_ROOT=" + filepath.Dir(bin),
		"AWS_REGION=us-east-1", "AWS_DEFAULT_REGION=us-east-1", "AWS_ACCESS_KEY_ID=ASIABENCHBENCHBENCH", "AWS_SECRET_ACCESS_KEY=bench",
		"AWS_SESSION_TOKEN=bench", "AWS_CONFIG_FILE=" + os.DevNull, "AWS_SHARED_CREDENTIALS_FILE=" + os.DevNull,
		"AWS_EC2_METADATA_DISABLED=true", "TABLE_NAME=bench"}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	select {
	case at := <-next:
		return at.Sub(start), nil
	case <-time.After(10 * time.Second):
		return 0, errors.New("no GET /next within 10 s")
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func fileSize(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// repoRoot is the directory of go.mod, found from the working directory up.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: run fleetbench from the repository")
		}
		dir = parent
	}
}
