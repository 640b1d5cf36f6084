//go:build !windows

// Outside Windows nothing runs under Wine.
package wintest

// UnderWine is false outside Windows.
func UnderWine() bool { return false }
