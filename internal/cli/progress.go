package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/fleetrun/fleetrun/api"
)

// progress shows a task's progress while it is waited for.
type progress interface {
	// Update shows t, the task as it now is.
	Update(t *api.Task)
	// Close ends the display, leaving the cursor on a fresh line.
	Close()
}

// lineProgress prints one timestamped line each time the task's state or counts change, for
// logs and pipes:
//
//	2025-06-01T12:00:03Z 01JX… running 2/3 done (1 succeeded, 1 failed)
type lineProgress struct {
	w    io.Writer
	now  func() time.Time
	last string
}

func (p *lineProgress) Update(t *api.Task) {
	line := progressLine(t)
	if line == p.last {
		return
	}
	p.last = line
	fmt.Fprintf(p.w, "%s %s\n", p.now().Format(time.RFC3339), line)
}

func (p *lineProgress) Close() {}

// progressLine describes t in one line, without a timestamp.
func progressLine(t *api.Task) string {
	c := t.Progress.Devices
	line := fmt.Sprintf("%s %s %d/%d done", t.ID, t.Status, done(c), c.Total)
	if f := finishedCounts(c); f != "" {
		line += " (" + f + ")"
	}
	return line
}

// barProgress draws a live progress bar on a terminal, with the counts beside it. It redraws
// on every change the server reports, which is rare enough not to need throttling.
type barProgress struct {
	w   io.Writer
	bar *progressbar.ProgressBar
}

func newBarProgress(w io.Writer) *barProgress { return &barProgress{w: w} }

func (p *barProgress) Update(t *api.Task) {
	c := t.Progress.Devices
	if p.bar == nil {
		p.bar = progressbar.NewOptions(max(c.Total, 1),
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(false),
			progressbar.OptionSetElapsedTime(false),
			progressbar.OptionFullWidth(),
			progressbar.OptionSetRenderBlankState(true),
			progressbar.OptionSetTheme(progressbar.ThemeASCII))
	}
	desc := t.Status
	if s := finishedCounts(c); s != "" {
		desc += " (" + s + ")"
	}
	p.bar.Describe(desc)
	p.bar.Set(done(c))
}

func (p *barProgress) Close() {
	if p.bar != nil {
		p.bar.Exit()
		fmt.Fprintln(p.w)
	}
}
