package localrun

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestResolveScript(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	outside := t.TempDir()
	writeExecutable(t, filepath.Join(root, "hello.sh"), "#!/bin/sh\necho hi\n")
	writeExecutable(t, filepath.Join(root, "ops", "patch.sh"), "#!/bin/sh\n")
	writeExecutable(t, filepath.Join(root, "with space.sh"), "#!/bin/sh\n")
	writeExecutable(t, filepath.Join(outside, "evil.sh"), "#!/bin/sh\n")
	if err := os.WriteFile(filepath.Join(root, "noexec.sh"), []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	writeExecutable(t, filepath.Join(root, "noshebang.sh"), "echo hi\n")
	writeExecutable(t, filepath.Join(root, "empty.sh"), "")
	writeExecutable(t, filepath.Join(root, "binary"), "\x7fELF\x02\x01\x01")
	if err := unix.Mkfifo(filepath.Join(root, "pipe.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("hello.sh", filepath.Join(root, "link-in.sh")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "evil.sh"), filepath.Join(root, "link-out.sh")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "dir-out")); err != nil {
		t.Fatal(err)
	}
	hello := filepath.Join(root, "hello.sh")
	patch := filepath.Join(root, "ops", "patch.sh")

	tests := []struct {
		name, url string
		want      string // the resolved path, or "" for an error
		wantErr   string // a part of the error text
	}{
		{"relative", "hello.sh", hello, ""},
		{"nested", "ops/patch.sh", patch, ""},
		{"dot-dot that stays inside", "ops/../hello.sh", hello, ""},
		{"a dot in front", "./hello.sh", hello, ""},
		{"a trailing slash is not the file", "hello.sh/", "", "does not exist"},
		{"a trailing slash, absolute", hello + "/", "", "does not exist"},
		{"a trailing dot is not the file", "hello.sh/.", "", "does not exist"},
		{"a file URL with a trailing slash", "file://" + hello + "/", "", "does not exist"},
		{"no #! line", "noshebang.sh", "", "does not start with #!"},
		{"empty", "empty.sh", "", "does not start with #!"},
		{"a binary", "binary", "", "does not start with #!"},
		{"a named pipe", "pipe.sh", "", "not a regular file"},
		{"absolute inside", hello, hello, ""},
		{"file URL absolute", "file://" + hello, hello, ""},
		{"file URL localhost", "file://localhost" + hello, hello, ""},
		{"file URL one slash", "file:" + hello, hello, ""},
		{"file URL relative", "file:ops/patch.sh", patch, ""},
		{"file URL escaped", "file:with%20space.sh", filepath.Join(root, "with space.sh"), ""},
		{"symlink inside", "link-in.sh", hello, ""},
		{"dot-dot escape", "../evil.sh", "", "outside the script root"},
		{"deep dot-dot escape", "ops/../../evil.sh", "", "outside the script root"},
		{"absolute outside", filepath.Join(outside, "evil.sh"), "", "outside the script root"},
		{"file URL outside", "file://" + filepath.Join(outside, "evil.sh"), "", "outside the script root"},
		{"file URL relative escape", "file:../evil.sh", "", "outside the script root"},
		{"symlink out", "link-out.sh", "", "symbolic link"},
		{"through a linked directory", "dir-out/evil.sh", "", "symbolic link"},
		{"directory", "ops", "", "not a regular file"},
		{"root itself", ".", "", "not a regular file"},
		{"missing", "missing.sh", "", "does not exist"},
		{"not executable", "noexec.sh", "", "not executable"},
		{"s3", "s3://bucket/scripts/patch.sh", "", "not a local script"},
		{"http", "http://example.com/hello.sh", "", "not a local script"},
		{"file URL with host", "file://example.com/hello.sh", "", "names host"},
		{"file URL with query", "file:hello.sh?x=1", "", "query"},
		{"blank", "  ", "", "required"},
		{"NUL", "hello.sh\x00", "", "NUL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ResolveScript(root, tc.url)
			check := CheckScript(root)(tc.url)
			if tc.want != "" {
				if err != nil || got != tc.want || check != nil {
					t.Fatalf("ResolveScript(%q) = %q, %v (check %v); want %q", tc.url, got, err, check, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ResolveScript(%q) = %q, %v; want an error about %q", tc.url, got, err, tc.wantErr)
			}
			if check == nil || check.Error() != err.Error() {
				t.Errorf("CheckScript(%q) = %v, want %v", tc.url, check, err)
			}
			if !strings.Contains(tc.url, root) && strings.Contains(err.Error(), root) {
				t.Errorf("the error shows the server's script root: %v", err)
			}
		})
	}
}

func TestResolveScriptWithoutRoot(t *testing.T) {
	t.Parallel()
	if _, err := ResolveScript("", "hello.sh"); err == nil {
		t.Error("no error without a script root")
	}
	if _, err := ResolveScript(filepath.Join(t.TempDir(), "missing"), "hello.sh"); err == nil {
		t.Error("no error with a missing script root")
	}
}
