//go:build windows

// control_windows.go: the control endpoint on Windows, a loopback TCP port whose address and
// token are in a file that only this user can open.
package app

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// On Windows the control endpoint is a loopback TCP port; the port and a random token are written
// to a file in the config folder that only this user can read, and every request carries the token.

// ControlSocketPath is the endpoint file of the config file at configPath.
func ControlSocketPath(configPath string) string {
	return filepath.Join(filepath.Dir(configPath), "control.json")
}

// ListenControl takes the control endpoint for this config folder.
func ListenControl(configPath string) (net.Listener, string, error) {
	path := ControlSocketPath(configPath)
	if ep, err := readEndpoint(path); err == nil {
		if c, err := net.DialTimeout("tcp", ep.Addr, time.Second); err == nil {
			c.Close()
			return nil, "", fmt.Errorf("%w (%s)", ErrAlreadyRunning, ep.Addr)
		}
	}
	ln, ep, _, err := listenLoopbackEndpoint(path, 32)
	if err != nil {
		return nil, "", fmt.Errorf("control endpoint: %w", err)
	}
	return ln, ep.Token, nil
}

// listenLoopbackEndpoint listens on a loopback port and writes its address and a random token of
// tokenBytes to path, a file only this user can open (writePrivate); it returns what it wrote,
// so the owner can tell its own file from a later one's. The control endpoint and the window
// lock are both this.
func listenLoopbackEndpoint(path string, tokenBytes int) (net.Listener, controlEndpoint, []byte, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, controlEndpoint{}, nil, err
	}
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		ln.Close()
		return nil, controlEndpoint{}, nil, err
	}
	ep := controlEndpoint{Addr: ln.Addr().String(), Token: hex.EncodeToString(b)}
	data, err := json.Marshal(ep)
	if err == nil {
		err = os.MkdirAll(filepath.Dir(path), 0o700)
	}
	if err == nil {
		err = writePrivate(path, data)
	}
	if err != nil {
		ln.Close()
		return nil, controlEndpoint{}, nil, err
	}
	return ln, ep, data, nil
}

// writePrivate writes data to path, a file whose DACL lets only this account (and the owner of
// the folder, see privateSecurity) open it. A file mode means nothing on Windows: os.WriteFile's
// 0600 leaves the file with what the folder passes down, which other accounts (and
// administrators' tools) may read. The file is created with its DACL, so it is never readable by
// anyone else, under a temporary name, then moved over path: CreateFile ignores the DACL of a file
// that exists already, and a move keeps the file's own.
func writePrivate(path string, data []byte) error {
	sd, err := privateSecurity(filepath.Dir(path))
	if err != nil {
		return err
	}
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	tmp := path + "." + hex.EncodeToString(b) + ".tmp"
	name, err := windows.UTF16PtrFromString(tmp)
	if err != nil {
		return fmt.Errorf("%s: %w", tmp, err)
	}
	sa := &windows.SecurityAttributes{Length: uint32(unsafe.Sizeof(windows.SecurityAttributes{})), SecurityDescriptor: sd}
	h, err := windows.CreateFile(name, windows.GENERIC_WRITE, 0, sa, windows.CREATE_NEW, windows.FILE_ATTRIBUTE_NORMAL, 0)
	if err != nil {
		return &os.PathError{Op: "create", Path: tmp, Err: err}
	}
	f := os.NewFile(uintptr(h), tmp)
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = replaceFile(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// privateSecurity is a security descriptor whose protected DACL (nothing inherited from the
// folder) allows only the account this process runs as and, when it is another account, the
// folder's owner: a worker run as a Windows service (LocalSystem) writes into the config folder
// of the user who installed it, and that user's window and CLI must still read the token.
func privateSecurity(dir string) (*windows.SECURITY_DESCRIPTOR, error) {
	u, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		return nil, fmt.Errorf("this process's user: %w", err)
	}
	sids := []*windows.SID{u.User.Sid}
	if owner, err := folderOwner(dir); err == nil && !owner.Equals(u.User.Sid) {
		sids = append(sids, owner)
	}
	var sddl strings.Builder
	sddl.WriteString("D:P") // P: protected, so no ACE of the folder's is inherited
	for _, sid := range sids {
		sddl.WriteString("(A;;FA;;;" + sid.String() + ")")
	}
	sd, err := windows.SecurityDescriptorFromString(sddl.String())
	if err != nil {
		return nil, fmt.Errorf("security descriptor %s: %w", sddl.String(), err)
	}
	return sd, nil
}

// folderOwner is the owner of dir.
func folderOwner(dir string) (*windows.SID, error) {
	sd, err := windows.GetNamedSecurityInfo(dir, windows.SE_FILE_OBJECT, windows.OWNER_SECURITY_INFORMATION)
	if err != nil {
		return nil, err
	}
	owner, _, err := sd.Owner()
	if err != nil {
		return nil, err
	}
	return owner, nil
}

// replaceFile moves tmp over path. A reader (the CLI dialing a worker that has just exited) may
// hold the old file for a moment, and Windows refuses to replace a file that is open: retry
// briefly. Not durable.Rename: its fallback copies the content into the old file, whose DACL may
// be the folder's.
func replaceFile(tmp, path string) error {
	from, err := windows.UTF16PtrFromString(tmp)
	if err != nil {
		return err
	}
	to, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		err = windows.MoveFileEx(from, to, windows.MOVEFILE_REPLACE_EXISTING)
		if err == nil || attempt == 20 ||
			!errors.Is(err, windows.ERROR_SHARING_VIOLATION) && !errors.Is(err, windows.ERROR_ACCESS_DENIED) {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: tmp, New: path, Err: err}
	}
	return nil
}

// locateControl reads the endpoint file again at every call: each start of a worker takes a new
// port and token.
func locateControl(configPath string) (controlAddr, error) {
	return endpointAddr(ControlSocketPath(configPath))
}
