//go:build windows

// Telling Wine from Windows: Wine's ntdll exports its version.
package wintest

import "golang.org/x/sys/windows"

// UnderWine reports whether this runs under Wine rather than Windows.
func UnderWine() bool {
	return windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil
}
