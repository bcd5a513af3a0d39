// Package lambdatest runs the functions' real bootstrap binaries the way Lambda does, under the
// Lambda Runtime Interface Emulator (aws-lambda-rie), on this machine and without containers:
// `sam local invoke` without Docker. It builds the emulator from the Go module proxy at a
// pinned version, builds bootstraps through the Makefile targets `sam build` uses, starts one
// emulator per function on free loopback ports, invokes it with event payloads, and reads the
// REPORT lines (Init Duration) it prints. It also reads template.yaml, so that tests can build
// what the template defines instead of a copy of it.
package lambdatest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// The emulator, pinned: its module has no tagged releases on the proxy, so a pseudo-version.
const (
	RIEPackage = "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie"
	RIEVersion = "v0.0.0-20261030222936-bef5c4ba774d"
)

var rie struct {
	once sync.Once
	path string
	err  error
}

// RIE returns the path of the emulator binary. It is built once with `go install` into the
// user cache directory, so later runs start at once.
func RIE(t testing.TB) string {
	t.Helper()
	rie.once.Do(func() { rie.path, rie.err = buildRIE() })
	if rie.err != nil {
		t.Fatalf("build aws-lambda-rie: %v", rie.err)
	}
	return rie.path
}

func buildRIE() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "fleetrun", "aws-lambda-rie", RIEVersion+"-"+runtime.GOOS+"-"+runtime.GOARCH)
	bin := filepath.Join(dir, "aws-lambda-rie")
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// Installed into a fresh directory and renamed, so that an interrupted build never leaves a
	// half-written binary where the next run would take it.
	tmp, err := os.MkdirTemp(dir, "install-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command("go", "install", RIEPackage+"@"+RIEVersion)
	cmd.Env = append(hostEnv(), "GOBIN="+tmp, "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s@%s: %w\n%s", RIEPackage, RIEVersion, err, out)
	}
	if err := os.Rename(filepath.Join(tmp, "aws-lambda-rie"), bin); err != nil {
		return "", err
	}
	return bin, nil
}

// hostEnv is this process's environment without cross-compilation settings, for builds that
// must run here.
func hostEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "GOOS", "GOARCH", "CGO_ENABLED":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// RepoRoot returns the directory of the module's go.mod, where the Makefile and template.yaml
// are.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Build runs `make build-<logicalID> ARTIFACTS_DIR=<dir>` in the repository, the contract of
// `sam build`, for goarch ("arm64" as deployed, runtime.GOARCH to run here), and returns the
// bootstrap it wrote.
func Build(t testing.TB, logicalID, goarch string) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("make", "--no-print-directory", "build-"+logicalID, "ARTIFACTS_DIR="+dir, "LAMBDA_GOARCH="+goarch)
	cmd.Dir = RepoRoot(t)
	cmd.Env = hostEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make build-%s: %v\n%s", logicalID, err, out)
	}
	bin := filepath.Join(dir, "bootstrap")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("make build-%s wrote no bootstrap: %v", logicalID, err)
	}
	return bin
}

// BuildPackage builds the Go package pkg (relative to the repository) as a bootstrap the way
// the Makefile builds functions, for linux/goarch, into a temporary directory.
func BuildPackage(t testing.TB, pkg, goarch string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "bootstrap")
	cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-trimpath", "-ldflags", "-s -w", "-o", bin, pkg)
	cmd.Dir = RepoRoot(t)
	cmd.Env = append(hostEnv(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// errFunction marks an invocation that the function itself failed.
var errFunction = errors.New("function error")
