package app

import (
	"fmt"
	"image"
	_ "image/jpeg" // image results may be JPEG
	"image/png"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/image/draw"
)

// Thumbnails of image results, for the Recent list: the result file itself leaves the spool once
// the hub has it, so the worker keeps a small copy. Bounded in size and count.
const (
	thumbSize     = 96       // longest side, pixels
	thumbMaxInput = 64 << 20 // larger results get no thumbnail (decoding would cost too much)
	thumbKeep     = 24       // thumbnails kept on disk
)

// makeThumbnail writes a small PNG of the image at src into dir and returns its path. It keeps at
// most thumbKeep files in dir, removing the oldest.
func makeThumbnail(src, dir, jobID string) (string, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return "", err
	}
	if fi.Size() > thumbMaxInput {
		return "", fmt.Errorf("thumbnail: %s is too large (%d bytes)", filepath.Base(src), fi.Size())
	}
	f, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer f.Close()
	cfg, _, err := image.DecodeConfig(f)
	if err != nil {
		return "", fmt.Errorf("thumbnail: %w", err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || cfg.Width*cfg.Height > 64<<20 {
		return "", fmt.Errorf("thumbnail: %dx%d is not a size to decode", cfg.Width, cfg.Height)
	}
	if _, err := f.Seek(0, 0); err != nil {
		return "", err
	}
	img, _, err := image.Decode(f)
	if err != nil {
		return "", fmt.Errorf("thumbnail: %w", err)
	}
	w, h := cfg.Width, cfg.Height
	if w >= h {
		h, w = max(1, h*thumbSize/w), thumbSize
	} else {
		w, h = max(1, w*thumbSize/h), thumbSize
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.ApproxBiLinear.Scale(dst, dst.Bounds(), img, img.Bounds(), draw.Over, nil)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	out := filepath.Join(dir, safeFileName(jobID)+".png")
	tmp := out + ".tmp"
	of, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return "", err
	}
	if err := png.Encode(of, dst); err != nil {
		of.Close()
		os.Remove(tmp)
		return "", err
	}
	if err := of.Close(); err != nil {
		os.Remove(tmp)
		return "", err
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", err
	}
	pruneThumbnails(dir)
	return out, nil
}

func pruneThumbnails(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) <= thumbKeep {
		return
	}
	type aged struct {
		name string
		mod  int64
	}
	var files []aged
	for _, e := range entries {
		if info, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), ".png") {
			files = append(files, aged{e.Name(), info.ModTime().UnixNano()})
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].mod < files[j].mod })
	for i := 0; i < len(files)-thumbKeep; i++ {
		os.Remove(filepath.Join(dir, files[i].name))
	}
}

func safeFileName(id string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, id)
}
