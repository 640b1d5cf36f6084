// Package winlane is the Windows lane of ./build.sh test: the real studio-worker.exe, exactly as
// ./build.sh package writes it, run under Wine on this Linux machine against a real Linux
// studio-hub on loopback. It has no code of its own; its tests must not know how the app works
// inside, only what a creator on Windows would see: commands, files under %AppData% and
// %LocalAppData%, the registry, the window.
package winlane
