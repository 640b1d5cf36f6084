package gpu

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestNVMLDLLMissingExplainsItself(t *testing.T) {
	for _, p := range nvmlDLLPaths() {
		if _, err := os.Stat(p); err == nil {
			t.Skipf("this machine has an NVIDIA driver (%s): the no-driver case cannot be seen here", p)
		}
	}
	s := Open(Options{})
	defer s.Close()
	snap, err := s.Sample(context.Background())
	if err != nil || snap.Source != SourceNone || len(snap.Devices) != 0 {
		t.Fatalf("sample = %+v, %v; want Source none and no error", snap, err)
	}
	if snap.Problem != "No NVIDIA driver found: VRAM checks are off" {
		t.Errorf("Problem = %q", snap.Problem)
	}
}

func TestNVMLDLLPathsAreSystem32ThenNVSMI(t *testing.T) {
	paths := nvmlDLLPaths()
	if len(paths) != 2 || !strings.EqualFold(filepath.Base(filepath.Dir(paths[0])), "system32") ||
		!strings.HasSuffix(paths[1], `NVIDIA Corporation\NVSMI\nvml.dll`) {
		t.Fatalf("paths = %q", paths)
	}
}

func TestParseProcessesBothStructVersions(t *testing.T) {
	for _, size := range []int{16, 24} {
		b := make([]byte, 2*size)
		binary.LittleEndian.PutUint32(b[0:], 4242)
		binary.LittleEndian.PutUint64(b[8:], 900<<20)
		binary.LittleEndian.PutUint32(b[size:], 7)
		binary.LittleEndian.PutUint64(b[size+8:], valueNotAvailable)
		got := parseProcesses(b, 2, size)
		want := []nvmlProcess{{PID: 4242, UsedBytes: 900 << 20}, {PID: 7, UsedBytes: valueNotAvailable}}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("size %d: %+v, want %+v", size, got, want)
		}
	}
}

func TestWindowsProcessNameAndParent(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if got := procName(uint32(os.Getpid())); !strings.EqualFold(got, filepath.Base(exe)) {
		t.Errorf("procName(self) = %q, want %q", got, filepath.Base(exe))
	}
	if got := procName(1 << 30); got != "" {
		t.Errorf("procName of no process = %q, want empty", got)
	}
	if pp, ok := parentPID(uint32(os.Getpid())); !ok || pp != uint32(os.Getppid()) {
		t.Errorf("parentPID(self) = %d, %v; want %d", pp, ok, os.Getppid())
	}
}
