package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestMakeDistContract builds `make dist` for this machine's platform only (the six release
// platforms take minutes) and checks what a release needs: a binary named for its version and
// platform whose --version prints the stamped version and commit, and a SHA256SUMS that
// matches it. The default platform list is checked for all six.
func TestMakeDistContract(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a release binary with make; skipped under -short")
	}
	root := filepath.Join("..", "..")
	printVar := exec.Command("make", "-s", "-f", "Makefile", "-f", "-", "print-platforms")
	printVar.Dir = root
	printVar.Stdin = strings.NewReader("print-platforms:\n\t@echo $(DIST_PLATFORMS)\n")
	out, err := printVar.Output()
	if err != nil {
		t.Fatalf("read DIST_PLATFORMS: %v", err)
	}
	platforms := strings.Fields(string(out))
	for _, goos := range []string{"linux", "darwin", "windows"} {
		for _, arch := range []string{"amd64", "arm64"} {
			if !strings.Contains(" "+strings.Join(platforms, " ")+" ", " "+goos+"/"+arch+" ") {
				t.Errorf("DIST_PLATFORMS %v lacks %s/%s", platforms, goos, arch)
			}
		}
	}

	dist := t.TempDir()
	host := runtime.GOOS + "/" + runtime.GOARCH
	cmd := exec.Command("make", "-s", "dist", "DIST="+dist, "DIST_PLATFORMS="+host, "VERSION=v9.8.7", "COMMIT=feedface1234")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make dist: %v\n%s", err, out)
	}
	name := "fleetrun-v9.8.7-" + runtime.GOOS + "-" + runtime.GOARCH
	version, err := exec.Command(filepath.Join(dist, name), "--version").Output()
	if err != nil {
		t.Fatalf("%s --version: %v", name, err)
	}
	if want := "fleetrun v9.8.7 (commit feedface1234, " + runtime.Version(); !strings.HasPrefix(string(version), want) {
		t.Errorf("--version = %q, want it to start %q", version, want)
	}
	sums, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(filepath.Join(dist, name))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(bin)
	if want := hex.EncodeToString(sum[:]) + "  " + name + "\n"; string(sums) != want {
		t.Errorf("SHA256SUMS = %q, want %q", sums, want)
	}
}
