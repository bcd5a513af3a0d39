// Package dashboard is fleetrun's web dashboard: a page of plain JavaScript modules, embedded
// in the binary, that watches and steers tasks through the public HTTP API and nothing else.
// `fleetrun serve` serves it at /ui/ beside the API; `fleetrun ui` serves it on a loopback port
// and forwards its API calls, signed, to a deployment on AWS.
//
// # Why plain modules
//
// The page is a few modules and a style sheet that every current browser loads as they are:
// no Node toolchain to build it, no library to vendor and keep up to date, nothing fetched
// from elsewhere at run time, so it works offline and under a Content-Security-Policy that
// allows this origin alone. What a framework would add (components, a virtual DOM) is not
// worth a dependency for four views; the device grid is a canvas, which no framework helps with.
//
// # Where the API is
//
// The page finds the API at the path above its own /ui/ (the modules resolve it from their own
// URL), so it works at the root of `fleetrun serve`, behind a reverse proxy that mounts it under
// a path, and under `fleetrun ui`, which mirrors an API Gateway stage's path. It follows the
// API's links by their path only, always on its own origin.
package dashboard

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// Path is where the dashboard is mounted, below the API's root.
const Path = "/ui/"

// contentSecurityPolicy lets the page load from and talk to its own origin alone, so that no
// request, however a bug might try, leaves for another host.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// asset is one embedded file, ready to serve.
type asset struct {
	body  []byte
	ctype string
	etag  string
}

// Handler serves the dashboard's files at the paths below Path: "/" is the page, and the
// modules and the style sheet beside it. Mount it with http.StripPrefix of Path less its
// trailing slash. Each file carries an ETag of its content, so a browser revalidates
// instead of downloading again, and never runs a stale module after an upgrade.
func Handler() http.Handler {
	assets := map[string]asset{}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		ctype := mime.TypeByExtension(path.Ext(p))
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		assets[strings.TrimPrefix(p, "static")] = asset{body: body, ctype: ctype,
			etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`}
		return nil
	})
	if err != nil {
		panic("dashboard: the embedded files cannot be read: " + err.Error()) // a broken build
	}
	assets["/"] = assets["/index.html"]
	delete(assets, "/index.html")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := assets[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.ctype)
		h.Set("ETag", a.etag)
		h.Set("Cache-Control", "no-cache")
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
	})
}

// WantsPage reports whether r comes from a browser asking for a page (Accept names text/html),
// which the root of a server redirects to the dashboard; an API client gets the API's answer.
func WantsPage(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			mt, _, _ := strings.Cut(part, ";")
			if strings.EqualFold(strings.TrimSpace(mt), "text/html") {
				return true
			}
		}
	}
	return false
}

// Redirect answers a browser at the root with a redirect to the dashboard. The Location is
// relative (http.Redirect would make it absolute), so it holds behind a reverse proxy that
// mounts the server under a path.
func Redirect(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Location", strings.TrimPrefix(Path, "/"))
	w.WriteHeader(http.StatusSeeOther)
}
