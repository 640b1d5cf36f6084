// Free space on Windows: GetDiskFreeSpaceEx's bytes available to the calling user (quotas
// included).

package diskspace

import (
	"fmt"

	"golang.org/x/sys/windows"
)

// Free returns the bytes the current user may still write on the volume holding path.
func Free(path string) (uint64, error) {
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return 0, fmt.Errorf("free space at %s: %w", path, err)
	}
	var avail, total, free uint64
	if err := windows.GetDiskFreeSpaceEx(p, &avail, &total, &free); err != nil {
		return 0, fmt.Errorf("free space at %s: %w", path, err)
	}
	return avail, nil
}
