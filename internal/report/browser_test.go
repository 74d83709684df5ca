package report_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/sentry-jml/sentry-jml/internal/report"
)

// chromiumPath is Debian's chromium (CI installs it: .ci/run).
const chromiumPath = "/usr/bin/chromium"

// The HTML report, opened from a file in headless Chromium with networking
// off: no console error, the chart's SVG drawn with one bar per bucket, one
// table row per leaver, and a screenshot (kept in $JML_REPORT_SCREENSHOT
// when set, to look at).
func TestHTMLReportInChromium(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("headless Chromium is required for this test and is missing at %s (apt-get install chromium; CI installs it): %v", chromiumPath, err)
	}
	var ls []*leaver
	for i := range 37 {
		ls = append(ls, newLeaver(fmt.Sprintf("id:E-%03d", i), t0).removed(t0.Add(time.Duration(i*i)*time.Minute)))
	}
	ls = append(ls,
		newLeaver("id:held", t0).record(t0.Add(time.Minute), "halted", `{"outcome":"halted","reason":"brakes","held":"brakes"}`, `[]`),
		newLeaver("id:<script>alert(1)</script>", t0).record(t0.Add(time.Minute), "needs_human", `{"outcome":"needs_human","reason":"last owner"}`, `[]`))
	rep, err := report.Deprovisioning(all(ls...), report.Options{From: t0.Add(-24 * time.Hour), To: t0.Add(24 * time.Hour), SLA: time.Hour,
		Sample: 25, Seed: 42, Now: t0.Add(48 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	f, err := os.Create(page)
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Write(f, report.FormatHTML); err != nil {
		t.Fatal(err)
	}
	f.Close()

	// Chromium's helper processes may still write to the profile for a moment
	// after the browser exits: the profile lives outside t.TempDir (whose
	// cleanup fails on a directory that is not empty) and is removed with retries.
	profile, err := os.MkdirTemp("", "jml-report-chromium-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("chromium profile %s left behind", profile)
	})
	opts := []chromedp.ExecAllocatorOption{chromedp.ExecPath(chromiumPath), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.Flag("disable-background-networking", true),
		chromedp.UserDataDir(profile), chromedp.WindowSize(1280, 900)}
	actx, cancel := chromedp.NewExecAllocator(t.Context(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	var mu sync.Mutex
	var problems []string
	chromedp.ListenTarget(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.APITypeError || e.Type == runtime.APITypeAssert {
				problems = append(problems, "console."+string(e.Type))
			}
		case *runtime.EventExceptionThrown:
			problems = append(problems, "exception: "+e.ExceptionDetails.Text)
		case *log.EventEntryAdded:
			if e.Entry.Level == log.LevelError {
				problems = append(problems, "log: "+e.Entry.Text)
			}
		}
	})
	var rows, bars, svgs int
	var title, alerted string
	var shot []byte
	if err := chromedp.Run(ctx,
		log.Enable(), runtime.Enable(),
		chromedp.Navigate("file://"+page),
		chromedp.WaitVisible("#chart", chromedp.ByID),
		chromedp.Evaluate(`document.querySelectorAll("#rows tbody tr").length`, &rows),
		chromedp.Evaluate(`document.querySelectorAll("svg#chart rect").length`, &bars),
		chromedp.Evaluate(`document.querySelectorAll("svg").length`, &svgs),
		chromedp.Evaluate(`document.title`, &title),
		chromedp.Evaluate(`Array.from(document.querySelectorAll("#rows td:first-child")).map(td => td.textContent).find(s => s.includes("script")) || ""`, &alerted),
		chromedp.FullScreenshot(&shot, 100), // 100: PNG
	); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("console errors: %s", strings.Join(problems, "; "))
	}
	if rows != len(rep.Rows) || rows != 39 {
		t.Errorf("table rows %d, want %d", rows, len(rep.Rows))
	}
	if svgs != 1 || bars != len(report.HistogramBounds)+1 {
		t.Errorf("svg %d, bars %d, want 1 and %d", svgs, bars, len(report.HistogramBounds)+1)
	}
	if !strings.Contains(title, "Deprovisioning report") {
		t.Errorf("title %q", title)
	}
	if !strings.Contains(alerted, "<script>") {
		t.Errorf("a person key with markup must show as text, got %q", alerted)
	}
	if len(shot) < 10_000 {
		t.Errorf("screenshot of %d bytes", len(shot))
	}
	if p := os.Getenv("JML_REPORT_SCREENSHOT"); p != "" {
		if err := os.WriteFile(p, shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
