package localrun

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
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
// Any other scheme (s3://, http://, …) is refused, and so is anything that leads outside root,
// lexically ("..") or through a symbolic link (both root and the script are resolved with
// filepath.EvalSymlinks before they are compared), anything that does not exist or is not a
// regular file, and a file the server may not execute: the runner executes the script directly,
// so it needs its execute bit and, unless it is a binary, a "#!" line naming its interpreter.
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
	candidate := abs
	if abs == "" {
		if !filepath.IsLocal(rel) {
			return "", fmt.Errorf("%q is outside the script root", scriptURL)
		}
		candidate = filepath.Join(rootAbs, rel)
	} else if !within(rootAbs, abs) && !within(rootReal, abs) {
		return "", fmt.Errorf("%q is outside the script root", scriptURL)
	}
	real, err := filepath.EvalSymlinks(candidate)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%q does not exist under the script root", scriptURL)
	}
	if err != nil {
		return "", fmt.Errorf("%q cannot be read under the script root", scriptURL)
	}
	if !within(rootReal, real) {
		return "", fmt.Errorf("%q leads outside the script root through a symbolic link", scriptURL)
	}
	info, err := os.Stat(real)
	if err != nil {
		return "", fmt.Errorf("%q cannot be read under the script root", scriptURL)
	}
	if !info.Mode().IsRegular() {
		return "", fmt.Errorf("%q is not a regular file", scriptURL)
	}
	if unix.Access(real, unix.X_OK) != nil {
		return "", fmt.Errorf("%q is not executable: the local runner runs a script directly, so it needs its execute bit and a #! line", scriptURL)
	}
	return real, nil
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
			return "", filepath.Clean(scriptURL), nil
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
			return "", filepath.Clean(p), nil
		}
		return p, "", nil
	}
	if u.Host != "" && !strings.EqualFold(u.Host, "localhost") {
		return "", "", fmt.Errorf("%q names host %q: a file URL must name a local file (file:///path or file:relative/path)", scriptURL, u.Host)
	}
	if u.Path == "" || !filepath.IsAbs(u.Path) {
		return "", "", fmt.Errorf("%q names no file", scriptURL)
	}
	return "", filepath.Clean(u.Path), nil
}

// within reports whether path p is dir or lies under it; both must be clean and absolute.
func within(dir, p string) bool {
	r, err := filepath.Rel(dir, p)
	return err == nil && (r == "." || filepath.IsLocal(r))
}
