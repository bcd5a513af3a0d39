package localrun

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// schemeRule matches the scheme of a URL (RFC 3986, section 3.1) at the start of a scriptUrl.
var schemeRule = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)

// ResolveScript turns a task's scriptUrl into the absolute path of the script to run, with
// every symbolic link resolved. Nothing is ever fetched. Accepted forms:
//
//   - a path relative to root: "hello.sh", "ops/patch.sh";
//   - an absolute path inside root;
//   - a file: URL: "file:///abs/path/inside/root/hello.sh" (empty or "localhost" host) names an
//     absolute path, "file:ops/patch.sh" one relative to root. Percent-escapes are decoded; a
//     query or fragment is refused.
//
// The path is never cleaned lexically: the system resolves it as written, one element at a
// time inside root (os.Root), so "hello.sh/" is not hello.sh, and ".." or a symbolic link that
// would leave root is refused. Any other scheme (s3://, http://, …) is refused, and so is
// anything that does not exist or is not a regular file, and a file the server may not run: the
// runner executes the script directly, so it needs its execute bit and a first line "#!" that
// names its interpreter.
//
// The error text is meant for the caller who submitted the task: it repeats the scriptUrl but
// never the server's own paths.
func ResolveScript(root, scriptURL string) (string, error) {
	if strings.TrimSpace(scriptURL) == "" {
		return "", errors.New("scriptUrl is required")
	}
	if root == "" {
		return "", errors.New("this server has no script root configured, so it cannot run scripts")
	}
	rel, abs, err := scriptPath(scriptURL)
	if err != nil {
		return "", err
	}
	rootAbs, err := filepath.Abs(root)
	if err != nil {
		return "", fmt.Errorf("the script root cannot be used: %w", err)
	}
	rootReal, err := filepath.EvalSymlinks(rootAbs)
	if err != nil {
		return "", errors.New("the script root of this server does not exist")
	}
	if abs != "" {
		var ok bool
		if rel, ok = under(abs, rootAbs, rootReal); !ok {
			return "", fmt.Errorf("%q is outside the script root", scriptURL)
		}
	}
	if !filepath.IsLocal(rel) && rel != "." {
		return "", fmt.Errorf("%q is outside the script root", scriptURL)
	}
	r, err := os.OpenRoot(rootReal)
	if err != nil {
		return "", errors.New("the script root of this server cannot be opened")
	}
	defer r.Close()
	// O_NONBLOCK: opening a named pipe must not wait for a writer.
	f, err := r.OpenFile(rel, os.O_RDONLY|unix.O_NONBLOCK, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR):
		return "", fmt.Errorf("%q does not exist under the script root", scriptURL)
	case err != nil:
		return "", fmt.Errorf("%q leads outside the script root through a symbolic link, or cannot be read", scriptURL)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil || !info.Mode().IsRegular() {
		return "", fmt.Errorf("%q is not a regular file", scriptURL)
	}
	// The file the system opened, wherever its links led: that is what runs.
	real, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	if err != nil || !within(rootReal, real) {
		return "", fmt.Errorf("%q cannot be read under the script root", scriptURL)
	}
	if unix.Access(real, unix.X_OK) != nil {
		return "", fmt.Errorf("%q is not executable: the local runner runs a script directly, so it needs its execute bit and a #! line", scriptURL)
	}
	head := make([]byte, 2)
	if n, _ := io.ReadFull(f, head); n < 2 || string(head) != "#!" {
		return "", fmt.Errorf("%q does not start with #!: the local runner runs a script directly, so its first line must name its interpreter, such as #!/bin/sh", scriptURL)
	}
	return real, nil
}

// under returns abs relative to the root, known by its absolute path or its real one; ok is
// false when abs does not start with either. Only the prefix is compared, nothing is cleaned:
// what follows is resolved inside the root.
func under(abs, rootAbs, rootReal string) (rel string, ok bool) {
	for _, root := range []string{rootAbs, rootReal} {
		if abs == root {
			return ".", true
		}
		if rel, ok := strings.CutPrefix(abs, strings.TrimSuffix(root, "/")+"/"); ok {
			return rel, true
		}
	}
	return "", false
}

// CheckScript returns a check for task.Rules.CheckScript that accepts exactly the scriptUrls
// ResolveScript can resolve under root.
func CheckScript(root string) func(url string) error {
	return func(u string) error {
		_, err := ResolveScript(root, u)
		return err
	}
}

// scriptPath splits a scriptUrl into a path relative to the root (rel) or an absolute path
// (abs); exactly one is set.
func scriptPath(scriptURL string) (rel, abs string, err error) {
	if strings.ContainsRune(scriptURL, 0) {
		return "", "", errors.New("scriptUrl may not contain a NUL byte")
	}
	if !schemeRule.MatchString(scriptURL) {
		if filepath.IsAbs(scriptURL) {
			return "", scriptURL, nil
		}
		return scriptURL, "", nil
	}
	u, err := url.Parse(scriptURL)
	if err != nil {
		return "", "", fmt.Errorf("%q is not a valid URL", scriptURL)
	}
	if !strings.EqualFold(u.Scheme, "file") {
		return "", "", fmt.Errorf("%q is not a local script: this server runs only files under its script root (a relative path or a file: URL), and never fetches one", scriptURL)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return "", "", fmt.Errorf("%q may not have a query or a fragment", scriptURL)
	}
	if u.Opaque != "" {
		p, err := url.PathUnescape(u.Opaque)
		if err != nil {
			return "", "", fmt.Errorf("%q is not a valid URL", scriptURL)
		}
		if filepath.IsAbs(p) {
			return "", p, nil
		}
		return p, "", nil
	}
	if u.Host != "" && !strings.EqualFold(u.Host, "localhost") {
		return "", "", fmt.Errorf("%q names host %q: a file URL must name a local file (file:///path or file:relative/path)", scriptURL, u.Host)
	}
	if u.Path == "" || !filepath.IsAbs(u.Path) {
		return "", "", fmt.Errorf("%q names no file", scriptURL)
	}
	return "", u.Path, nil
}

// within reports whether path p is dir or lies under it; both must be clean and absolute.
func within(dir, p string) bool {
	r, err := filepath.Rel(dir, p)
	return err == nil && (r == "." || filepath.IsLocal(r))
}
