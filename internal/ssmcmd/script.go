package ssmcmd

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// bucketRule is S3's rule for bucket names (general purpose buckets).
// It is compiled on first use, not when a function starts.
var bucketRule = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`) })

// S3Object is a script's location.
type S3Object struct {
	Bucket string
	Key    string
}

// ParseScriptURL splits s3://bucket/key. The key must name a file: not empty, not ending in a
// slash, and free of control characters.
func ParseScriptURL(raw string) (S3Object, error) {
	rest, ok := strings.CutPrefix(raw, "s3://")
	if !ok {
		return S3Object{}, fmt.Errorf("must be an S3 URL such as s3://bucket/scripts/patch.sh")
	}
	bucket, key, _ := strings.Cut(rest, "/")
	if !bucketRule().MatchString(bucket) || strings.Contains(bucket, "..") {
		return S3Object{}, fmt.Errorf("%q is not a valid S3 bucket name", bucket)
	}
	if key == "" || strings.HasSuffix(key, "/") {
		return S3Object{}, fmt.Errorf("must name a script file in the bucket, such as s3://%s/scripts/patch.sh", bucket)
	}
	if strings.ContainsFunc(key, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return S3Object{}, fmt.Errorf("the object key may not contain control characters")
	}
	if base := path.Base(key); base == "." || base == ".." {
		return S3Object{}, fmt.Errorf("must name a script file, not %q", base)
	}
	return S3Object{Bucket: bucket, Key: key}, nil
}

// CheckScript returns the submit-time check of scriptUrl for task.Rules.CheckScript: the URL
// must be s3://bucket/key with the bucket in allowedBuckets. It never fetches the object; a
// missing object shows up as failed devices, since the managed nodes download it themselves.
func CheckScript(allowedBuckets []string) func(url string) error {
	allowed := slices.Clone(allowedBuckets)
	return func(raw string) error {
		obj, err := ParseScriptURL(raw)
		if err != nil {
			return err
		}
		if !slices.Contains(allowed, obj.Bucket) {
			return fmt.Errorf("bucket %q is not one this deployment runs scripts from", obj.Bucket)
		}
		return nil
	}
}

// HTTPSURL is the object's https URL, the form AWS-RunRemoteScript's sourceInfo path takes.
// It is virtual-hosted style, except for bucket names with dots, which TLS certificates for
// *.s3.amazonaws.com do not cover and which therefore use path style.
func (o S3Object) HTTPSURL() string {
	segments := strings.Split(o.Key, "/")
	for i, s := range segments {
		segments[i] = url.PathEscape(s)
	}
	key := strings.Join(segments, "/")
	if strings.Contains(o.Bucket, ".") {
		return "https://s3.amazonaws.com/" + o.Bucket + "/" + key
	}
	return "https://" + o.Bucket + ".s3.amazonaws.com/" + key
}

// FileName is the name the script is downloaded under on the device.
func (o S3Object) FileName() string { return path.Base(o.Key) }

// CommandLine is the commandLine parameter: the script's file name followed by every arg, each
// quoted for a POSIX shell so that an arg reaches the script as exactly one argument, whatever
// it contains. AWS-RunRemoteScript runs it from the directory the script was downloaded to.
func CommandLine(fileName string, args []string) string {
	words := make([]string, 0, 1+len(args))
	words = append(words, ShellQuote(fileName))
	for _, a := range args {
		words = append(words, ShellQuote(a))
	}
	return strings.Join(words, " ")
}

// ShellQuote quotes s as one word for a POSIX shell. Words made only of characters that no
// shell treats specially stay as they are; anything else is put in single quotes, inside which
// nothing is special, and a single quote in s becomes a closing quote, an escaped quote and an
// opening quote:
//
//	it's here → 'it'\''s here'
//
// "=" and "~" count as special: they change the meaning of a command's first word (an
// assignment) or of a word's start (tilde expansion).
func ShellQuote(s string) string {
	if s != "" && !strings.ContainsFunc(s, unsafeInShell) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func unsafeInShell(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return false
	}
	return !strings.ContainsRune("_-.,/:@%+", r)
}
