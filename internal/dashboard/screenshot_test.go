package dashboard_test

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fleetrun/fleetrun/api"
)

// TestTaskPageScreenshot renders the task page of a finished 600-device task, with one failed
// device's output open, at 1280×800 into a PNG: into a temporary directory, or where
// $FLEETRUN_SCREENSHOT says (`make screenshot` writes docs/dashboard.png). It fails if the page
// cannot be rendered.
func TestTaskPageScreenshot(t *testing.T) {
	srv := startServer(t, "")
	tb := newTab(t, srv.base)
	task := srv.submit(t, api.SubmitRequest{DeviceIDs: deviceIDs("web-%03d", 600), ScriptURL: "flaky.sh", Args: []string{"--check", "disk"},
		MaxConcurrency: "10%"})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := srv.api.Wait(ctx, task.ID, nil); err != nil {
		t.Fatal(err)
	}
	tb.run("open the task", chromedp.EmulateViewport(1280, 800), chromedp.Navigate(srv.base+"/ui/#/tasks/"+task.ID))
	tb.waitJS("the finished task's grid", heading+` === "completed" && document.getElementById("grid").dataset.count === "600"`)
	x, y := cellCentre(tb, 12)
	tb.run("open web-012", chromedp.MouseClickXY(x, y))
	tb.waitJS("web-012's output", `document.getElementById("stderr").textContent.includes("web-012")`)
	eval[bool](tb, "scroll to the top", `window.scrollTo(0, 0), document.activeElement.blur(), true`)
	shot, err := chromedp.Run(tb.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("render the task page: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("the screenshot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 1280 || b.Dy() != 800 || colours(img) < 8 {
		t.Fatalf("the screenshot is %v with %d colours: not the page", b, colours(img))
	}
	out := os.Getenv("FLEETRUN_SCREENSHOT")
	if out == "" {
		out = filepath.Join(t.TempDir(), "dashboard.png")
	}
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d bytes)", out, len(shot))
}

// colours counts the distinct colours of img, up to 1,000.
func colours(img image.Image) int {
	seen := map[[4]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y && len(seen) < 1000; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bl, a := img.At(x, y).RGBA()
			seen[[4]uint32{r, g, bl, a}] = true
		}
	}
	return len(seen)
}
