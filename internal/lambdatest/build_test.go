package lambdatest_test

import (
	"debug/buildinfo"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetrun/fleetrun/internal/lambdatest"
)

// minimalFunction is the smallest aws-lambda-go function, built beside ours for comparison.
const minimalFunction = "./internal/lambdatest/testdata/minimal"

// TestMakeBuildsArm64Bootstraps holds the Makefile to the contract `sam build` relies on: for
// every function the template defines, `make build-<LogicalId> ARTIFACTS_DIR=<dir>` writes
// <dir>/bootstrap, a static, stripped linux/arm64 executable.
func TestMakeBuildsArm64Bootstraps(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every function with make; skipped under -short")
	}
	tpl := loadTemplate(t)
	minimal, err := os.Stat(lambdatest.BuildPackage(t, minimalFunction, "arm64"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("minimal aws-lambda-go function: linux/arm64 bootstrap, %.1f MiB", float64(minimal.Size())/(1<<20))
	for _, id := range tpl.Functions() {
		t.Run(id, func(t *testing.T) {
			bin := lambdatest.Build(t, id, "arm64")
			f, err := elf.Open(bin)
			if err != nil {
				t.Fatalf("%s is not an ELF file: %v", bin, err)
			}
			defer f.Close()
			if f.Machine != elf.EM_AARCH64 || f.Class != elf.ELFCLASS64 || f.Type != elf.ET_EXEC {
				t.Errorf("bootstrap is %v %v %v, want EM_AARCH64 ELFCLASS64 ET_EXEC", f.Machine, f.Class, f.Type)
			}
			if f.Section(".symtab") != nil {
				t.Error("bootstrap has a symbol table: it was not stripped (-ldflags -s)")
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					t.Error("bootstrap asks for a dynamic loader: it was not built with CGO_ENABLED=0")
				}
			}
			info, err := buildinfo.ReadFile(bin)
			if err != nil {
				t.Fatalf("no build information in the bootstrap: %v", err)
			}
			settings := map[string]string{}
			for _, s := range info.Settings {
				settings[s.Key] = s.Value
			}
			// -trimpath keeps -ldflags out of the build information; .symtab above shows -s took.
			wantSettings := map[string]string{"-tags": "lambda.norpc", "-trimpath": "true",
				"CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": "arm64"}
			for k, v := range wantSettings {
				if settings[k] != v {
					t.Errorf("built with %s=%q, want %q", k, settings[k], v)
				}
			}
			if want := "github.com/fleetrun/fleetrun/functions/" + wantFunctions[id]; info.Path != want {
				t.Errorf("bootstrap is %s, want %s", info.Path, want)
			}
			fi, err := os.Stat(bin)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode()&0o111 == 0 {
				t.Errorf("bootstrap is not executable: %v", fi.Mode())
			}
			t.Logf("%s: linux/arm64 bootstrap, %.1f MiB", id, float64(fi.Size())/(1<<20))
		})
	}
}

// TestMakeDeployNeedsAllowedScriptBuckets holds `make deploy` to stopping, before it builds
// anything, when samconfig.toml's deploy section does not set AllowedScriptBuckets, with a
// message that says how to set it; the local_invoke section's value does not count.
func TestMakeDeployNeedsAllowedScriptBuckets(t *testing.T) {
	t.Parallel()
	cases := []struct {
		config string
		ok     bool
	}{
		{"[default.deploy.parameters]\nconfirm_changeset = true\n" +
			"# parameter_overrides = \"AllowedScriptBuckets=b\"\n" +
			"[default.local_invoke.parameters]\nparameter_overrides = \"AllowedScriptBuckets=example\"\n", false},
		{"[default.deploy.parameters]\nparameter_overrides = \"AllowedScriptBuckets=\\\"my-scripts\\\" LogLevel=\\\"info\\\"\"\n", true},
	}
	for i, tc := range cases {
		config := filepath.Join(t.TempDir(), "samconfig.toml")
		if err := os.WriteFile(config, []byte(tc.config), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("make", "-s", "deploy-config", "SAMCONFIG="+config)
		cmd.Dir = lambdatest.RepoRoot(t)
		out, err := cmd.CombinedOutput()
		switch {
		case tc.ok && err != nil:
			t.Errorf("case %d: make deploy-config failed with AllowedScriptBuckets set: %v\n%s", i, err, out)
		case !tc.ok && (err == nil || !strings.Contains(string(out), "AllowedScriptBuckets is not set") ||
			!strings.Contains(string(out), "sam deploy --guided")):
			t.Errorf("case %d: make deploy-config = %v\n%s\nwant a failure that says how to set AllowedScriptBuckets", i, err, out)
		}
	}
}
