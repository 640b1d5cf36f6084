// thumbs.go: what the worker keeps of a result after the hub has it — a thumbnail and a preview of
// an image, a copy of speech — bounded in size and count. It must not know the window.

package app

import (
	"fmt"
	"image"
	_ "image/jpeg" // image results may be JPEG
	"image/png"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/image/draw"
)

// Thumbnails and previews of image results, and copies of audio results, for the Recent list and
// a job's details: the result file itself leaves the spool once the hub has it, so the worker
// keeps a small copy. Bounded in size and count.
const (
	thumbSize     = 96       // longest side, pixels
	previewSize   = 640      // longest side of the larger copy a click on a thumbnail shows
	thumbMaxInput = 64 << 20 // larger results get no thumbnail (decoding would cost too much)
	thumbKeep     = 24       // thumbnails kept on disk, and as many previews
	mediaKeep     = 12       // audio results kept to be played
	mediaMaxBytes = 32 << 20 // larger audio results are not kept
)

// keptResult is what the worker keeps of a job's result once the hub has it.
type keptResult struct {
	Thumb, Preview, Media string
}

// makeThumbnail writes a small PNG of the image at src into dir and returns its path. It keeps at
// most thumbKeep files in dir, removing the oldest.
func makeThumbnail(src, dir, jobID string) (string, error) {
	return scaledCopy(src, dir, safeFileName(jobID)+".png", thumbSize)
}

// makePreview is makeThumbnail at previewSize (never larger than the image), for the details.
func makePreview(src, dir, jobID string) (string, error) {
	return scaledCopy(src, dir, safeFileName(jobID)+previewSuffix, previewSize)
}

const previewSuffix = "-preview.png"

// keepMedia keeps an audio result to be played: a hard link where the spool and dir share a
// disk (instant, and no space used until the spool lets go), else a copy.
func keepMedia(src, dir, jobID string) (string, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return "", err
	}
	if fi.Size() > mediaMaxBytes {
		return "", fmt.Errorf("keep %s: %d bytes, more than the %d kept", filepath.Base(src), fi.Size(), mediaMaxBytes)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	out := filepath.Join(dir, safeFileName(jobID)+strings.ToLower(filepath.Ext(src)))
	_ = os.Remove(out)
	if err := os.Link(src, out); err != nil {
		if err := copyFile(src, out); err != nil {
			return "", err
		}
	}
	prune(dir, isMedia, mediaKeep)
	return out, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	return out.Close()
}

func isThumb(name string) bool {
	return strings.HasSuffix(name, ".png") && !strings.HasSuffix(name, previewSuffix)
}
func isPreview(name string) bool { return strings.HasSuffix(name, previewSuffix) }
func isMedia(name string) bool {
	return !strings.HasSuffix(name, ".png") && !strings.HasSuffix(name, ".tmp")
}

// scaledCopy writes a PNG of the image at src, its longest side at most size, as dir/name.
func scaledCopy(src, dir, name string, size int) (string, error) {
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
	switch {
	case max(w, h) <= size && size != thumbSize: // a preview is never blown up
	case w >= h:
		h, w = max(1, h*size/w), size
	default:
		w, h = max(1, w*size/h), size
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.ApproxBiLinear.Scale(dst, dst.Bounds(), img, img.Bounds(), draw.Over, nil)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	out := filepath.Join(dir, name)
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
	if size == thumbSize {
		prune(dir, isThumb, thumbKeep)
	} else {
		prune(dir, isPreview, thumbKeep)
	}
	return out, nil
}

// prune keeps the newest keep files of dir that match, removing the others.
func prune(dir string, match func(string) bool, keep int) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	type aged struct {
		name string
		mod  int64
	}
	var files []aged
	for _, e := range entries {
		if info, err := e.Info(); err == nil && match(e.Name()) {
			files = append(files, aged{e.Name(), info.ModTime().UnixNano()})
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].mod < files[j].mod })
	for i := 0; i < len(files)-keep; i++ {
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
