// thumbs_test.go: thumbnails are small, bounded in count, and refused for what is not an image.

package app

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

func TestMakeThumbnail(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "big.png")
	img := image.NewRGBA(image.Rect(0, 0, 400, 200))
	for x := 0; x < 400; x++ {
		for y := 0; y < 200; y++ {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 80, 255})
		}
	}
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
	f.Close()
	thumbs := filepath.Join(dir, "thumbs")
	for i := 0; i < thumbKeep+5; i++ {
		out, err := makeThumbnail(src, thumbs, fmt.Sprintf("job/%d", i))
		if err != nil {
			t.Fatal(err)
		}
		tf, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := png.DecodeConfig(tf)
		tf.Close()
		if err != nil || cfg.Width != thumbSize || cfg.Height != thumbSize/2 {
			t.Fatalf("thumbnail %v %dx%d, want %dx%d", err, cfg.Width, cfg.Height, thumbSize, thumbSize/2)
		}
		if filepath.Dir(out) != thumbs {
			t.Fatalf("thumbnail outside its folder: %s", out)
		}
	}
	entries, _ := os.ReadDir(thumbs)
	if len(entries) != thumbKeep {
		t.Fatalf("%d thumbnails kept, want %d", len(entries), thumbKeep)
	}
	if _, err := makeThumbnail(filepath.Join(dir, "missing.png"), thumbs, "x"); err == nil {
		t.Fatal("no error for a missing file")
	}
	notImage := filepath.Join(dir, "x.png")
	os.WriteFile(notImage, []byte("not an image"), 0o600)
	if _, err := makeThumbnail(notImage, thumbs, "y"); err == nil {
		t.Fatal("no error for a file that is not an image")
	}
}
