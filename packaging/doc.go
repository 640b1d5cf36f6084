// Package packaging holds the test of the packages `./build.sh package` writes under dist/: the
// Linux tarball (binary, icon, .desktop entry, Makefile) and the Windows exe (icon, version
// metadata, GUI subsystem). It has no code of its own and must not know how the app works
// inside: it checks only what a creator downloads and double-clicks.
package packaging
