package main

import (
	"bufio"
	"context"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestSmokeDemoWindow starts the real binary's demo with its window on the test's display (xvfb-run
// in ./build.sh test), waits until the jobs have completed, and takes a screenshot of the screen
// into artifacts/smoke-demo.png, which must show a drawn window, not a blank screen.
func TestSmokeDemoWindow(t *testing.T) {
	if testing.Short() {
		t.Skip("smoke test builds and runs the real binary; skipped with -short")
	}
	if os.Getenv("DISPLAY") == "" {
		t.Skip("no DISPLAY: run under xvfb-run (./build.sh test does)")
	}
	importBin, err := exec.LookPath("import")
	if err != nil {
		t.Skip("ImageMagick's import is not installed (./build.sh deps installs it)")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "studio-worker")
	build := exec.Command("go", "build", "-tags", "migrated_fynedo", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "demo", "--jobs", "6")
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "XDG_CACHE_HOME="+filepath.Join(dir, "cache"))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer // the exec copier writes it while a failure reads it
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	finished := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		var all strings.Builder
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "ended as expected") {
				finished <- all.String()
				break
			}
		}
		for sc.Scan() { // keep draining so the demo never blocks on a full pipe
		}
		select {
		case finished <- all.String():
		default:
		}
	}()
	var out string
	select {
	case out = <-finished:
	case <-ctx.Done():
		t.Fatalf("the demo did not finish its jobs\nstderr:\n%s", stderr.String())
	}
	if !strings.Contains(out, "All 6 jobs ended as expected") {
		t.Fatalf("demo output:\n%s\nstderr:\n%s", out, stderr.String())
	}
	if err := os.MkdirAll("artifacts", 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join("artifacts", "smoke-demo.png")
	if out, err := exec.Command(importBin, "-window", "root", shot).CombinedOutput(); err != nil {
		t.Fatalf("screenshot: %v\n%s", err, out)
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if n := distinctColours(img, 200); n < 20 {
		t.Fatalf("screenshot %s looks blank: %d distinct colours", shot, n)
	}
	t.Logf("screenshot: %s", shot)
}

// distinctColours counts the colours in img, stopping at limit.
func distinctColours(img image.Image, limit int) int {
	seen := map[[3]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bl, _ := img.At(x, y).RGBA()
			seen[[3]uint32{r >> 8, g >> 8, bl >> 8}] = true
			if len(seen) >= limit {
				return len(seen)
			}
		}
	}
	return len(seen)
}

// lockedBuffer collects a child's output from the two goroutines exec copies it with.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
