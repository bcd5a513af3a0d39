package dashboard_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// The browser tests share one headless Chromium, started by the first test that needs it and
// stopped by TestMain; each test opens a tab of its own. The machine is small and shared:
// one browser process tree is enough.
var browser struct {
	once   sync.Once
	ctx    context.Context // the browser's context; a tab is chromedp.NewContext(browser.ctx)
	cancel context.CancelFunc
	err    error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if browser.cancel != nil {
		browser.cancel()
	}
	os.Exit(code)
}

// chromiumPath finds Debian's chromium (or $FLEETRUN_CHROMIUM).
func chromiumPath() (string, error) {
	if p := os.Getenv("FLEETRUN_CHROMIUM"); p != "" {
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("chromium is not installed (apt-get install -y chromium, as .ci/run does)")
}

// startBrowser starts the shared browser with flags that keep it to itself: no first-run
// pages, no background networking, no component updates or sync, all of which would reach
// for hosts this closed network refuses.
func startBrowser() {
	path, err := chromiumPath()
	if err != nil {
		browser.err = err
		return
	}
	dir, err := os.MkdirTemp("", "fleetrun-chromium-")
	if err != nil {
		browser.err = err
		return
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(dir),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("no-pings", true),
		chromedp.WindowSize(1280, 800),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelBrowser := chromedp.NewContext(alloc)
	browser.cancel = func() {
		cancelBrowser()
		cancelAlloc()
		os.RemoveAll(dir)
	}
	// Do with no actions starts the browser.
	if err := chromedp.Do(ctx); err != nil {
		browser.err = fmt.Errorf("start %s: %w", path, err)
		return
	}
	browser.ctx = ctx
}

// tab is one browser tab of a test, watching what the page does: every request it makes and
// every error it logs.
type tab struct {
	t    *testing.T
	ctx  context.Context
	host string // the only host the page may talk to

	mu       sync.Mutex
	requests []string
	foreign  []string
	errors   []string
	statuses map[int]bool // HTTP error statuses the test expects the page to meet (and log)
}

// newTab opens a tab for a page of the server at base (an http://host:port URL) and checks,
// when the test ends, that the page asked no other host for anything and logged no error.
// Without chromium the test is skipped under -short and fails otherwise.
func newTab(t *testing.T, base string) *tab {
	t.Helper()
	browser.once.Do(startBrowser)
	if browser.err != nil {
		if testing.Short() {
			t.Skipf("skipping the browser test: %v", browser.err)
		}
		t.Fatalf("the browser tests need a browser: %v", browser.err)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := chromedp.NewContext(browser.ctx)
	tb := &tab{t: t, ctx: ctx, host: u.Host, statuses: map[int]bool{}}
	if err := chromedp.Listen(ctx, tb.listen); err != nil {
		cancel()
		t.Fatalf("open a tab: %v", err)
	}
	t.Cleanup(func() {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		if len(tb.requests) == 0 {
			t.Error("the page made no request at all: the tab watched nothing")
		}
		if len(tb.foreign) > 0 {
			t.Errorf("the page asked other hosts than %s:\n%s", tb.host, strings.Join(tb.foreign, "\n"))
		}
		if len(tb.errors) > 0 {
			t.Errorf("the page logged errors:\n%s", strings.Join(tb.errors, "\n"))
		}
		cancel()
	})
	return tb
}

// expectStatus says the page will meet an API answer of this status on purpose (a 401 from a
// wrong token, a 422 from a bad form), which Chromium logs as a failed resource.
func (tb *tab) expectStatus(status int) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.statuses[status] = true
}

var statusOf = regexp.MustCompile(`status of (\d{3})`)

func (tb *tab) listen(ev any) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	switch e := ev.(type) {
	case *network.EventRequestWillBeSent:
		u, err := url.Parse(e.Request.URL)
		tb.requests = append(tb.requests, e.Request.URL)
		if err != nil || (u.Scheme != "data" && u.Host != tb.host) {
			tb.foreign = append(tb.foreign, e.Request.URL)
		}
	case *network.EventLoadingFailed:
		if !e.Canceled {
			tb.errors = append(tb.errors, fmt.Sprintf("loading failed: %s (%s)", e.ErrorText, e.Type))
		}
	case *runtime.EventExceptionThrown:
		tb.errors = append(tb.errors, "exception: "+e.ExceptionDetails.Text+" "+e.ExceptionDetails.URL)
	case *runtime.EventConsoleAPICalled:
		if typ := string(e.Type); typ == "error" || typ == "assert" || typ == "warning" {
			var args []string
			for _, a := range e.Args {
				args = append(args, string(a.Value)+a.Description)
			}
			tb.errors = append(tb.errors, fmt.Sprintf("console.%s: %s", typ, strings.Join(args, " ")))
		}
	case *log.EventEntryAdded:
		if e.Entry.Level != log.EntryLevelError && e.Entry.Level != log.EntryLevelWarning {
			return
		}
		if e.Entry.Source == log.EntrySourceNetwork {
			if m := statusOf.FindStringSubmatch(e.Entry.Text); m != nil {
				var status int
				fmt.Sscan(m[1], &status)
				if tb.statuses[status] {
					return
				}
			}
		}
		tb.errors = append(tb.errors, fmt.Sprintf("log %s (%s): %s %s", e.Entry.Level, e.Entry.Source, e.Entry.Text, e.Entry.URL))
	}
}

// requested reports whether the page asked for a URL that contains part.
func (tb *tab) requested(part string) bool {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return slices.ContainsFunc(tb.requests, func(u string) bool { return strings.Contains(u, part) })
}

// run runs chromedp actions in the tab, failing the test on an error.
func (tb *tab) run(what string, steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 90*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		tb.t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the tab's page.
func eval[T any](tb *tab, what, js string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		tb.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// waitJS waits until the JavaScript expression js is truthy in the page.
// On a timeout it says what the page showed.
func (tb *tab) waitJS(what, js string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 90*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](js,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(60*time.Second)))
	if err != nil {
		shown, _ := chromedp.Run(tb.ctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText.slice(0, 3000)`))
		tb.t.Fatalf("wait for %s: %v; the page showed:\n%s", what, err, shown)
	}
}
