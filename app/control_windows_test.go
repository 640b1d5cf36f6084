//go:build windows

// Tests of the Windows control endpoint file: only this user can open it, from its creation on,
// and a client finds a restarted worker through it.
package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/windows"

	"studioworker/internal/wintest"
)

// fileAllAccess is FILE_ALL_ACCESS, what "FA" stands for in SDDL.
const fileAllAccess = windows.STANDARD_RIGHTS_REQUIRED | windows.SYNCHRONIZE | 0x1ff

// assertUserOnly checks that path's DACL is protected and holds one ACE, allowing this user.
//
// Wine 8 keeps no DACL: it turns the one given into the file's unix mode and makes one up from
// the mode when asked, always with SYSTEM and never protected. There the check is what the mode
// can say: no ACE for anyone but this user and SYSTEM (a file made with os.WriteFile gets one for
// Everyone).
func assertUserOnly(t *testing.T, path string) {
	t.Helper()
	sd, err := windows.GetNamedSecurityInfo(path, windows.SE_FILE_OBJECT, windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		t.Fatalf("GetNamedSecurityInfo: %v", err)
	}
	wine := wintest.UnderWine()
	if wine {
		t.Logf("under Wine, which keeps no DACL, the file reads back as %s", sd)
	}
	assertUserOnlySD(t, sd, wine)
}

// assertUserOnlySD checks a security descriptor; mapped says it is Wine's made-up one.
func assertUserOnlySD(t *testing.T, sd *windows.SECURITY_DESCRIPTOR, mapped bool) {
	t.Helper()
	control, _, err := sd.Control()
	if err != nil {
		t.Fatal(err)
	}
	dacl, _, err := sd.DACL()
	if err != nil || dacl == nil {
		t.Fatalf("no DACL (everyone may open it): %v", err)
	}
	u, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		t.Fatal(err)
	}
	if !mapped {
		if control&windows.SE_DACL_PROTECTED == 0 {
			t.Errorf("the DACL is not protected: the folder's ACEs are inherited (%s)", sd)
		}
		if dacl.AceCount != 1 {
			t.Fatalf("the DACL holds %d ACEs, want 1: %s", dacl.AceCount, sd)
		}
	}
	for i := range uint32(dacl.AceCount) {
		var ace *windows.ACCESS_ALLOWED_ACE
		if err := windows.GetAce(dacl, i, &ace); err != nil {
			t.Fatal(err)
		}
		sid := (*windows.SID)(unsafe.Pointer(&ace.SidStart))
		if mapped && sid.IsWellKnown(windows.WinLocalSystemSid) {
			continue
		}
		if ace.Header.AceType != windows.ACCESS_ALLOWED_ACE_TYPE || !sid.Equals(u.User.Sid) {
			t.Errorf("ACE %d is type %d for %s, want an allow for this user %s: %s", i, ace.Header.AceType, sid, u.User.Sid, sd)
			continue
		}
		if ace.Header.AceFlags&windows.INHERITED_ACE != 0 {
			t.Errorf("ACE %d is inherited", i)
		}
		if ace.Mask&fileAllAccess != fileAllAccess {
			t.Errorf("the user's ACE grants %#x, want all of %#x", ace.Mask, fileAllAccess)
		}
	}
}

func TestWindowsControlFileOnlyThisUserCanOpen(t *testing.T) {
	dir := wintest.TempDir(t)
	// The descriptor the file is created with, which Wine can show even though it keeps none.
	sd, err := privateSecurity(dir)
	if err != nil {
		t.Fatal(err)
	}
	assertUserOnlySD(t, sd, false)

	config := filepath.Join(dir, "worker", "config.json")
	path := ControlSocketPath(config)

	// A stale file from an earlier run, with the DACL the folder passes down, is replaced by one
	// with the user-only DACL (CreateFile would keep an existing file's DACL).
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(`{"addr":"127.0.0.1:1","token":"stale"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		ln, token, err := ListenControl(config)
		if err != nil {
			t.Fatalf("round %d: ListenControl: %v", round, err)
		}
		assertUserOnly(t, path)
		ep, err := readEndpoint(path)
		if err != nil || ep.Token != token || ep.Addr != ln.Addr().String() {
			t.Errorf("round %d: endpoint file %+v, %v; want %s and the token", round, ep, err, ln.Addr())
		}
		ln.Close()
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("a temporary file was left behind: %s", e.Name())
		}
	}
}

// TestWindowsControlClientReattaches: a window's client attaches again by itself to a restarted
// worker through the real endpoint file, which the restart rewrites with a new port and token.
func TestWindowsControlClientReattaches(t *testing.T) {
	checkReattach(t, controlChannels()[0], wintest.TempDir(t))
}
