package assets

import (
	"bytes"
	"crypto/sha256"
	"image/png"
	"testing"
)

func TestIconsDecodeAndDiffer(t *testing.T) {
	seen := map[[32]byte]string{}
	for _, name := range StateIcons() {
		b, err := StateIcon(name)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if img.Bounds().Dx() != 64 || img.Bounds().Dy() != 64 {
			t.Errorf("%s is %v, want 64x64", name, img.Bounds())
		}
		sum := sha256.Sum256(b)
		if other, dup := seen[sum]; dup {
			t.Errorf("%s and %s are the same icon", name, other)
		}
		seen[sum] = name
	}
	app, err := png.Decode(bytes.NewReader(AppIcon()))
	if err != nil {
		t.Fatal(err)
	}
	if app.Bounds().Dx() != 512 {
		t.Errorf("app icon is %v, want 512 wide", app.Bounds())
	}
	if _, err := StateIcon("nope"); err == nil {
		t.Error("unknown icon name gave no error")
	}
}
