package packaging

import (
	"bufio"
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"debug/pe"
	"encoding/binary"
	"errors"
	"fmt"
	"image/png"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf16"
)

// The artifacts ./build.sh package writes, relative to the repository root.
const (
	linuxTarball = "dist/linux/studio-worker.tar.xz"
	windowsExe   = "dist/windows/studio-worker.exe"
)

// root is the repository root: this package's folder is one below it.
func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// needDist skips when nothing was packaged (a plain `go test`); once dist/ exists, every
// artifact must be there.
func needDist(t *testing.T) string {
	t.Helper()
	r := root(t)
	if _, err := os.Stat(filepath.Join(r, "dist")); errors.Is(err, fs.ErrNotExist) {
		t.Skip("dist/ was not built: run ./build.sh package (./build.sh test does it first)")
	}
	return r
}

// appMeta is what FyneApp.toml says about the app, read the way build.sh reads it.
type appMeta struct {
	ID, Name, Version, Build string
}

func readAppMeta(t *testing.T, r string) appMeta {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(r, "FyneApp.toml"))
	if err != nil {
		t.Fatal(err)
	}
	get := func(key string) string {
		m := regexp.MustCompile(`(?m)^` + key + `\s*=\s*"?([^"\n]*)"?\s*$`).FindSubmatch(data)
		if m == nil {
			t.Fatalf("FyneApp.toml has no %s", key)
		}
		return string(m[1])
	}
	return appMeta{ID: get("ID"), Name: get("Name"), Version: get("Version"), Build: get("Build")}
}

// nonEmpty fails unless path is a regular file with content.
func nonEmpty(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v", err)
	}
	if len(data) == 0 {
		t.Fatalf("%s is empty", path)
	}
	return data
}

// desktopEntry reads the [Desktop Entry] group of a .desktop file.
func desktopEntry(t *testing.T, path string) map[string]string {
	t.Helper()
	data := nonEmpty(t, path)
	out := map[string]string{}
	group := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			group = line
		case group == "[Desktop Entry]":
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Errorf("%s: not key=value: %q", path, line)
				continue
			}
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out
}

var versionLine = regexp.MustCompile(`^studio-worker (\S+) \(commit (\S+)\), protocol v1\n$`)

func TestPackages(t *testing.T) {
	r := needDist(t)
	meta := readAppMeta(t, r)
	var commit string // what the Linux binary says it was built from; the exe must say the same

	t.Run("linux", func(t *testing.T) {
		tarball := filepath.Join(r, linuxTarball)
		nonEmpty(t, tarball)
		dir := t.TempDir()
		if out, err := exec.Command("tar", "-xJf", tarball, "-C", dir).CombinedOutput(); err != nil {
			t.Fatalf("tar -xJf %s: %v\n%s", tarball, err, out)
		}
		top := filepath.Join(dir, "studio-worker")
		usr := filepath.Join(top, "usr", "local")

		bin := filepath.Join(usr, "bin", "studio-worker")
		nonEmpty(t, bin)
		if fi, err := os.Stat(bin); err != nil || fi.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s is not executable: %v %v", bin, fi.Mode(), err)
		}
		checkELF(t, bin)
		checkTags(t, bin, "linux")

		icon := filepath.Join(usr, "share", "pixmaps", meta.ID+".png")
		if _, err := png.Decode(bytes.NewReader(nonEmpty(t, icon))); err != nil {
			t.Errorf("%s is not a PNG: %v", icon, err)
		}

		desktop := filepath.Join(usr, "share", "applications", meta.ID+".desktop")
		e := desktopEntry(t, desktop)
		if exe, _, _ := strings.Cut(e["Exec"], " "); exe != filepath.Base(bin) {
			t.Errorf(".desktop Exec=%q does not name the binary %q", e["Exec"], filepath.Base(bin))
		}
		if e["Icon"] != strings.TrimSuffix(filepath.Base(icon), ".png") {
			t.Errorf(".desktop Icon=%q does not name the icon %q", e["Icon"], filepath.Base(icon))
		}
		if e["Type"] != "Application" || e["Name"] != meta.Name {
			t.Errorf(".desktop Type=%q Name=%q, want Application and %q", e["Type"], e["Name"], meta.Name)
		}

		if mk := string(nonEmpty(t, filepath.Join(top, "Makefile"))); !strings.Contains(mk, "user-install:") || !strings.Contains(mk, "user-uninstall:") {
			t.Error("the Makefile has no user-install/user-uninstall targets")
		}

		// The packaged binary starts and says which build it is (this also fails if it cannot
		// be loaded at all, as with eager symbol binding and no NVIDIA driver).
		cmd := exec.Command(bin, "version")
		cmd.Env = append(os.Environ(), "LANG=C.UTF-8")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s version: %v", bin, err)
		}
		m := versionLine.FindStringSubmatch(string(out))
		if m == nil {
			t.Fatalf("%s version printed %q", bin, out)
		}
		if m[1] != meta.Version {
			t.Errorf("version %q, FyneApp.toml says %q", m[1], meta.Version)
		}
		if m[2] == "unknown" || len(m[2]) < 7 {
			t.Errorf("commit %q: the package was built without the commit", m[2])
		}
		commit = m[2]
	})

	t.Run("windows", func(t *testing.T) {
		exe := filepath.Join(r, windowsExe)
		data := nonEmpty(t, exe)
		f, err := pe.Open(exe)
		if err != nil {
			t.Fatalf("%s is not a PE file: %v", exe, err)
		}
		defer f.Close()
		if f.Machine != pe.IMAGE_FILE_MACHINE_AMD64 {
			t.Errorf("machine %#x, want amd64", f.Machine)
		}
		oh, ok := f.OptionalHeader.(*pe.OptionalHeader64)
		if !ok || oh.Subsystem != pe.IMAGE_SUBSYSTEM_WINDOWS_GUI {
			t.Errorf("not a Windows GUI program (a console window would open with it)")
		}
		rsrc := f.Section(".rsrc")
		if rsrc == nil {
			t.Fatal("no .rsrc section: no icon, no version metadata")
		}
		res, err := rsrc.Data()
		if err != nil {
			t.Fatal(err)
		}
		types, err := resourceTypes(res)
		if err != nil {
			t.Fatal(err)
		}
		for id, what := range map[uint32]string{3: "RT_ICON", 14: "RT_GROUP_ICON", 16: "RT_VERSION", 24: "RT_MANIFEST"} {
			if !slices.Contains(types, id) {
				t.Errorf("no %s resource (types %v)", what, types)
			}
		}
		for _, s := range []string{meta.Name, meta.Version + "." + meta.Build} {
			if !bytes.Contains(res, utf16le(s)) {
				t.Errorf("the version resource does not say %q", s)
			}
		}
		checkTags(t, exe, "windows")
		if commit != "" && !bytes.Contains(data, []byte(commit)) {
			t.Errorf("the exe does not carry the commit %q the Linux binary was built from", commit)
		}
	})
}

// checkELF fails on a Linux binary that binds every symbol at load: go-nvml resolves the NVML
// symbols after dlopen, so such a binary does not start on a computer without an NVIDIA driver.
func checkELF(t *testing.T, path string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("%s is not an ELF binary: %v", path, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		t.Errorf("machine %v, want x86-64", f.Machine)
	}
	if v, _ := f.DynValue(elf.DT_FLAGS); len(v) > 0 && v[0]&uint64(elf.DF_BIND_NOW) != 0 {
		t.Error("linked with BIND_NOW (-z now): it cannot start without libnvidia-ml")
	}
	if v, _ := f.DynValue(elf.DT_FLAGS_1); len(v) > 0 && v[0]&uint64(elf.DF_1_NOW) != 0 {
		t.Error("linked with DF_1_NOW (-z now): it cannot start without libnvidia-ml")
	}
}

// checkTags reads the Go build information: built for goos, with cgo, with the fyneDo migration
// tag and as a release.
func checkTags(t *testing.T, path, goos string) {
	t.Helper()
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: no Go build information: %v", path, err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	tags := strings.Split(settings["-tags"], ",")
	for _, want := range []string{"migrated_fynedo", "release"} {
		if !slices.Contains(tags, want) {
			t.Errorf("%s: built without the %s tag (tags %q)", filepath.Base(path), want, settings["-tags"])
		}
	}
	if settings["GOOS"] != goos || settings["CGO_ENABLED"] != "1" {
		t.Errorf("%s: GOOS=%s CGO_ENABLED=%s, want %s and 1", filepath.Base(path), settings["GOOS"], settings["CGO_ENABLED"], goos)
	}
	if bi.Path != "studioworker" {
		t.Errorf("%s: main package %q", filepath.Base(path), bi.Path)
	}
}

// resourceTypes lists the type ids of a PE resource section's root directory
// (IMAGE_RESOURCE_DIRECTORY, then its entries).
func resourceTypes(rsrc []byte) ([]uint32, error) {
	if len(rsrc) < 16 {
		return nil, fmt.Errorf("resource section of %d bytes", len(rsrc))
	}
	named := int(binary.LittleEndian.Uint16(rsrc[12:]))
	ids := int(binary.LittleEndian.Uint16(rsrc[14:]))
	n := named + ids
	if 16+8*n > len(rsrc) {
		return nil, fmt.Errorf("resource directory of %d entries overruns the section", n)
	}
	var out []uint32
	for i := named; i < n; i++ { // named entries come first; types by id follow
		out = append(out, binary.LittleEndian.Uint32(rsrc[16+8*i:]))
	}
	return out, nil
}

func utf16le(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, u)
	}
	return b
}

// TestResourceTypes checks the resource parser itself on a hand-made directory.
func TestResourceTypes(t *testing.T) {
	dir := make([]byte, 16+8*3)
	binary.LittleEndian.PutUint16(dir[12:], 1) // one named entry, ignored
	binary.LittleEndian.PutUint16(dir[14:], 2)
	binary.LittleEndian.PutUint32(dir[16+8:], 3)
	binary.LittleEndian.PutUint32(dir[16+16:], 16)
	tests := []struct {
		name string
		data []byte
		want []uint32
		err  bool
	}{
		{"two ids after a name", dir, []uint32{3, 16}, false},
		{"too short", dir[:10], nil, true},
		{"entries overrun", dir[:20], nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resourceTypes(tc.data)
			if (err != nil) != tc.err || !slices.Equal(got, tc.want) {
				t.Errorf("got %v, %v; want %v (error %v)", got, err, tc.want, tc.err)
			}
		})
	}
}
